-- Whether an earlier run of month $2 of advertiser $1 wrote an audience file.
SELECT EXISTS (SELECT 1 FROM cdp_exports
                WHERE advertiser_id = $1 AND month = $2 AND dataset = 'audience'
                  AND status = 'written') AS "written!"
