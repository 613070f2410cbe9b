-- The titles each reader opened before the engagement window ($1): the model learns nothing
-- from them, but they are never recommended. Reads are kept longer than the window (retention).
SELECT DISTINCT user_id AS "user_id!", webtoon_id AS "webtoon_id!"
  FROM user_webtoon_events
 WHERE occurred_at < $1
