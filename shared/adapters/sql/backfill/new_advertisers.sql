-- Active NEW advertisers (every one, or those in $1) with their backfill's frontier: the month
-- in flight if there is one, else the oldest month not COMPLETED; none when all are done.
SELECT a.advertiser_id,
       a.backfill_start_month IS NOT NULL AS "started!",
       f.month AS "month?",
       f.state AS "state?",
       f.retry_count AS "retry_count?",
       f.next_attempt_at,
       f.claim_token
  FROM advertisers a
  LEFT JOIN LATERAL (
        SELECT m.month, m.state, m.retry_count, m.next_attempt_at, m.claim_token
          FROM cdp_months m
         WHERE m.advertiser_id = a.advertiser_id AND m.state <> 'COMPLETED'
         ORDER BY m.state IN ('QUEUED', 'RUNNING') DESC, m.month
         LIMIT 1) f ON true
 WHERE a.active
   AND a.advertiser_type = 'NEW'
   AND ($1::BIGINT[] IS NULL OR a.advertiser_id = ANY($1))
