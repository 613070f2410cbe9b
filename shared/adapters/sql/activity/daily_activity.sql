-- Active readers (any event) and episode reads per Asia/Seoul day from $1 to $2.
SELECT (occurred_at AT TIME ZONE 'Asia/Seoul')::date AS "day!",
       count(DISTINCT user_id) AS "readers!",
       count(*) FILTER (WHERE kind = 'episode_read') AS "reads!"
  FROM user_webtoon_events
 WHERE occurred_at >= $1 AND occurred_at < $2
 GROUP BY 1
 ORDER BY 1
