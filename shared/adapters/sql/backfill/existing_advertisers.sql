-- Active EXISTING advertisers (every one, or those in $1) with the state of their current
-- month $2 and when its data last changed: the daily rollup's latest rewrite of one of its days
-- in [$2, $3).
SELECT a.advertiser_id,
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
 WHERE a.active
   AND a.advertiser_type = 'EXISTING'
   AND ($1::BIGINT[] IS NULL OR a.advertiser_id = ANY($1))
