-- The backfill as a whole: advertisers by kind, months by state, the last hour's pace.
SELECT
    (SELECT count(*) FROM advertisers) AS "advertisers!",
    (SELECT count(*) FROM advertisers WHERE active) AS "active!",
    (SELECT count(*) FROM advertisers WHERE advertiser_type = 'NEW') AS "backfilling!",
    (SELECT count(*) FROM advertisers WHERE backfill_completed) AS "backfill_completed!",
    count(*) FILTER (WHERE m.state = 'PENDING') AS "pending!",
    count(*) FILTER (WHERE m.state = 'QUEUED') AS "queued!",
    count(*) FILTER (WHERE m.state = 'RUNNING') AS "running!",
    count(*) FILTER (WHERE m.state = 'COMPLETED') AS "completed!",
    count(*) FILTER (WHERE m.state = 'FAILED') AS "failed!",
    count(*) FILTER (WHERE m.state = 'FAILED' AND m.retry_count > $1) AS "exhausted!",
    count(*) FILTER (WHERE m.state = 'COMPLETED' AND m.completed_at > now() - interval '1 hour')
        AS "completed_last_hour!"
FROM cdp_months m
