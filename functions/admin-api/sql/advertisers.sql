-- A page of advertisers by id, after cursor $1, filtered by activity $2 and type $3.
SELECT advertiser_id, name, advertiser_type, active, backfill_start_month, backfill_completed,
       last_completed_month, deactivated_reason, deactivated_by, created_at, updated_at
FROM advertisers
WHERE advertiser_id > $1
  AND ($2::boolean IS NULL OR active = $2)
  AND ($3::text IS NULL OR advertiser_type = $3)
ORDER BY advertiser_id
LIMIT $4
