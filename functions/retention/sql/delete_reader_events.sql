-- Reader events that occurred before $1: deleted, or with $2 (a dry run) only counted.
WITH gone AS (
    DELETE FROM user_webtoon_events WHERE occurred_at < $1 AND NOT $2 RETURNING 1)
SELECT CASE WHEN $2
            THEN (SELECT count(*) FROM user_webtoon_events WHERE occurred_at < $1)
            ELSE (SELECT count(*) FROM gone) END AS "removed!"
