-- An update request: the webtoon updated if it exists and the request is not older than what
-- is stored. The SET list is create_webtoon.sql's.
UPDATE webtoons
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
 WHERE platform = $1 AND external_id = $2 AND source_updated_at <= $12
RETURNING id, false AS "created!"
