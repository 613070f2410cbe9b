-- One advertiser.
SELECT advertiser_id, name, advertiser_type, active, backfill_start_month, backfill_completed,
       last_completed_month, deactivated_reason, deactivated_by, created_at, updated_at
FROM advertisers
WHERE advertiser_id = $1
