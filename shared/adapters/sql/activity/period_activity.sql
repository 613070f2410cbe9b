-- Active readers (any event) and episode reads from $1 to $2.
SELECT count(DISTINCT user_id) AS "readers!",
       count(*) FILTER (WHERE kind = 'episode_read') AS "reads!"
  FROM user_webtoon_events
 WHERE occurred_at >= $1 AND occurred_at < $2
