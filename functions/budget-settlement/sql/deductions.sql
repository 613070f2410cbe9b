-- Each campaign's deductions on one KST day ($1 <= occurred_at < $2), with its advertiser. A
-- day's deductions past a bigint of micros (9.2 trillion won) cannot be real: held at the
-- largest bigint, so the campaign shows as off instead of failing the settlement.
SELECT campaign_id,
       max(advertiser_id) AS "advertiser_id!",
       least(sum(cost_micros), 9223372036854775807)::bigint AS "cost_micros!"
  FROM ad_events
 WHERE occurred_at >= $1 AND occurred_at < $2
 GROUP BY campaign_id
