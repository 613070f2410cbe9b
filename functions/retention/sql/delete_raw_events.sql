-- Raw events in [$2, $1): what is left before the cut-off $1 in the partition straddling it,
-- from its month's start $2. Deleted, or with $3 (a dry run) only counted.
WITH gone AS (
    DELETE FROM ad_events
     WHERE occurred_at < $1 AND occurred_at >= $2 AND NOT $3
    RETURNING 1)
SELECT CASE WHEN $3
            THEN (SELECT count(*) FROM ad_events WHERE occurred_at < $1 AND occurred_at >= $2)
            ELSE (SELECT count(*) FROM gone) END AS "removed!"
