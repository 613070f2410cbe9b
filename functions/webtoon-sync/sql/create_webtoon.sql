-- A create request: the webtoon inserted, or, if it exists and the request is not older than
-- what is stored, updated as an update request would (update_webtoon.sql has the same SET
-- list). Every descriptive column keeps its stored value when the request leaves it out; image
-- keys follow their URL, so a new URL without a stored key clears the old key. `xmax = 0` is
-- true only for a freshly inserted row, which tells created from updated.
INSERT INTO webtoons AS webtoons
       (platform, external_id, title, status, rating, age_rating, publish_days, thumbnail_url,
        thumbnail_key, cover_url, cover_key, source_updated_at)
VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7::text[], '{}'), $8, $9, $10, $11, $12)
    ON CONFLICT (platform, external_id) DO UPDATE
   SET title = COALESCE($3, webtoons.title),
       status = COALESCE($4, webtoons.status),
       rating = COALESCE($5, webtoons.rating),
       age_rating = COALESCE($6, webtoons.age_rating),
       publish_days = COALESCE($7::text[], webtoons.publish_days),
       thumbnail_url = COALESCE($8, webtoons.thumbnail_url),
       thumbnail_key = CASE WHEN $8::text IS NULL THEN webtoons.thumbnail_key ELSE $9 END,
       cover_url = COALESCE($10, webtoons.cover_url),
       cover_key = CASE WHEN $10::text IS NULL THEN webtoons.cover_key ELSE $11 END,
       source_updated_at = $12,
       updated_at = now()
 WHERE webtoons.source_updated_at <= $12
RETURNING id, xmax = 0 AS "created!"
