-- Active EXISTING advertisers (every one, or those in $1) with their frontier (a month in
-- flight, else the oldest month before the current month $2 not COMPLETED), the state of
-- their current month, and when its data last changed: the daily rollup's latest rewrite of
-- one of its days in [$2, $3).
SELECT a.advertiser_id,
       f.month AS "frontier_month?",
       f.state AS "frontier_state?",
       f.retry_count AS "frontier_retry_count?",
       f.next_attempt_at AS frontier_next_attempt_at,
       f.claim_token AS frontier_claim_token,
       m.state AS "state?",
       m.retry_count AS "retry_count?",
       m.next_attempt_at,
       m.claim_token,
       m.started_at,
       (SELECT max(d.rolled_up_at)
          FROM campaign_daily_stats d
         WHERE d.advertiser_id = a.advertiser_id
           AND d.stat_date >= $2 AND d.stat_date < $3) AS data_changed_at
  FROM advertisers a
  LEFT JOIN cdp_months m ON m.advertiser_id = a.advertiser_id AND m.month = $2
  LEFT JOIN LATERAL (
        SELECT e.month, e.state, e.retry_count, e.next_attempt_at, e.claim_token
          FROM cdp_months e
         WHERE e.advertiser_id = a.advertiser_id
           AND (e.state IN ('QUEUED', 'RUNNING') OR (e.state <> 'COMPLETED' AND e.month < $2))
         ORDER BY e.state IN ('QUEUED', 'RUNNING') DESC, e.month
         LIMIT 1) f ON true
 WHERE a.active
   AND a.advertiser_type = 'EXISTING'
   AND ($1::BIGINT[] IS NULL OR a.advertiser_id = ANY($1))
