UPDATE rollup_reviews r SET notified_at = now()
FROM UNNEST($1::date[], $2::bigint[]) AS n(stat_date, campaign_id)
WHERE r.stat_date = n.stat_date AND r.campaign_id = n.campaign_id
  AND r.notified_at IS NULL
