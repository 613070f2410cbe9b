-- Hourly windows of days before $1: deleted, or with $2 (a dry run) only counted.
WITH gone AS (
    DELETE FROM performance_metrics WHERE window_date < $1 AND NOT $2 RETURNING 1)
SELECT CASE WHEN $2
            THEN (SELECT count(*) FROM performance_metrics WHERE window_date < $1)
            ELSE (SELECT count(*) FROM gone) END AS "removed!"
