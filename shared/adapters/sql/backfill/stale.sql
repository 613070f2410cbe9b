-- Months RUNNING since before $1: their worker died. Locked for the cleanup's transaction.
SELECT advertiser_id, month, claim_token AS "claim_token!", retry_count
  FROM cdp_months
 WHERE state = 'RUNNING' AND started_at < $1
   FOR UPDATE SKIP LOCKED
