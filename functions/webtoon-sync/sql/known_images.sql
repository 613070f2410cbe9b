-- The S3 keys already stored for the webtoon ($1, $2)'s image URLs among $3, so unchanged
-- images are not downloaded again.
WITH w AS (SELECT id, thumbnail_url, thumbnail_key, cover_url, cover_key
             FROM webtoons WHERE platform = $1 AND external_id = $2)
SELECT url AS "url!", key AS "key!"
  FROM (SELECT thumbnail_url AS url, thumbnail_key AS key FROM w
        UNION ALL SELECT cover_url, cover_key FROM w
        UNION ALL SELECT e.thumbnail_url, e.thumbnail_key
                    FROM episodes e JOIN w ON e.webtoon_id = w.id
                   WHERE e.thumbnail_url = ANY($3)) images
 WHERE key IS NOT NULL AND url = ANY($3)
