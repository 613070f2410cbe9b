-- Advertiser $1's backfill months (the BACKFILL_MONTHS = $2 from its start) by state, and its
-- current month $3's state; the last completions for the pace.
SELECT
    count(*) FILTER (WHERE state = 'COMPLETED') AS "done!",
    count(*) FILTER (WHERE state = 'FAILED') AS "failed!",
    count(*) FILTER (WHERE state IN ('QUEUED', 'RUNNING')) AS "in_flight!",
    (SELECT state FROM cdp_months c WHERE c.advertiser_id = $1 AND c.month = $3) AS current_state,
    (SELECT array_agg(completed_at ORDER BY completed_at DESC) FROM (
        SELECT completed_at FROM cdp_months c
        WHERE c.advertiser_id = $1 AND c.state = 'COMPLETED'
          AND c.completed_at > now() - interval '1 day'
        ORDER BY completed_at DESC LIMIT 6) recent) AS recent_completions
FROM cdp_months m
JOIN advertisers a USING (advertiser_id)
WHERE m.advertiser_id = $1
  AND m.month >= a.backfill_start_month
  AND m.month < a.backfill_start_month + make_interval(months => $2)
