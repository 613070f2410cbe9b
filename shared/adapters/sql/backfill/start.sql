-- NEW advertisers in $1 seen for the first time: their months $3 (oldest first, $2 the first),
-- all PENDING. Two runs at once start an advertiser once: the second finds it started.
-- Returns how many advertisers were started.
WITH started AS (
    UPDATE advertisers
       SET backfill_start_month = $2, updated_at = now()
     WHERE advertiser_id = ANY($1)
       AND advertiser_type = 'NEW'
       AND backfill_start_month IS NULL
 RETURNING advertiser_id
), months AS (
    INSERT INTO cdp_months (advertiser_id, month)
    SELECT s.advertiser_id, m.month
      FROM started s CROSS JOIN unnest($3::DATE[]) AS m(month)
        ON CONFLICT DO NOTHING
)
SELECT count(*) AS "started!" FROM started
