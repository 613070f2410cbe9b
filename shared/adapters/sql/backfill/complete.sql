-- NEW advertisers in $1 whose every month is COMPLETED become EXISTING.
UPDATE advertisers a
   SET advertiser_type = 'EXISTING', backfill_completed = true, updated_at = now()
 WHERE a.advertiser_id = ANY($1)
   AND a.advertiser_type = 'NEW'
   AND a.backfill_start_month IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM cdp_months m
                    WHERE m.advertiser_id = a.advertiser_id AND m.state <> 'COMPLETED')
RETURNING a.advertiser_id
