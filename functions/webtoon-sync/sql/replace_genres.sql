-- Webtoon $1's genres become exactly those named $2.
WITH wanted AS (SELECT g.id AS genre_id FROM genres g WHERE g.name = ANY($2)),
removed AS (
    DELETE FROM webtoon_genres wg
     WHERE wg.webtoon_id = $1 AND wg.genre_id NOT IN (SELECT genre_id FROM wanted))
INSERT INTO webtoon_genres (webtoon_id, genre_id)
SELECT $1, genre_id FROM wanted
    ON CONFLICT DO NOTHING
