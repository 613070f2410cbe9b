-- Months in flight since before $1: queued and never started (the message was lost), or
-- started and never finished (the worker died). Locked for the cleanup's transaction.
SELECT advertiser_id, month, state, claim_token AS "claim_token!", retry_count
  FROM cdp_months
 WHERE (state = 'QUEUED' AND queued_at < $1)
    OR (state = 'RUNNING' AND started_at < $1)
   FOR UPDATE SKIP LOCKED
