-- A page of advertiser $1's months, oldest first after cursor month $2, in state $3.
SELECT month, state, queued_at, started_at, completed_at, processed_records, failed_records,
       error, retry_count, next_attempt_at
FROM cdp_months
WHERE advertiser_id = $1
  AND ($2::date IS NULL OR month > $2)
  AND ($3::text IS NULL OR state = $3)
ORDER BY month
LIMIT $4
