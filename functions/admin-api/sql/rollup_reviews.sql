-- A page of rollup review items, newest day first after cursor ($1, $2), in status $3, of day
-- $4, of advertiser $5.
SELECT stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio, status,
       opened_at, resolved_by, resolved_at, resolution
FROM rollup_reviews
WHERE ($1::date IS NULL OR stat_date < $1 OR (stat_date = $1 AND campaign_id > $2))
  AND ($3::text IS NULL OR status = $3)
  AND ($4::date IS NULL OR stat_date = $4)
  AND ($5::bigint IS NULL OR advertiser_id = $5)
ORDER BY stat_date DESC, campaign_id
LIMIT $6
