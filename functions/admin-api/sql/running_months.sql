-- A page of the months in flight (QUEUED or RUNNING, or only state $3), by advertiser and month
-- after cursor ($1, $2).
SELECT advertiser_id, month, state, queued_at, started_at, retry_count
FROM cdp_months
WHERE state IN ('QUEUED', 'RUNNING')
  AND ($3::text IS NULL OR state = $3)
  AND ($1::bigint IS NULL OR (advertiser_id, month) > ($1, $2::date))
ORDER BY advertiser_id, month
LIMIT $4
