-- Episode reads per title in a period ($2 to $3) and the one before ($1 to $2).
SELECT e.webtoon_id AS "webtoon_id!",
       w.title AS "title!",
       count(*) FILTER (WHERE e.occurred_at >= $2) AS "reads!",
       count(*) FILTER (WHERE e.occurred_at < $2) AS "previous_reads!"
  FROM user_webtoon_events e
  JOIN webtoons w ON w.id = e.webtoon_id
 WHERE e.kind = 'episode_read' AND e.occurred_at >= $1 AND e.occurred_at < $3
 GROUP BY e.webtoon_id, w.title
