-- Episode reads and readers per genre in a period ($2 to $3), and reads in the one before ($1 to $2).
SELECT g.name AS "genre!",
       count(*) FILTER (WHERE e.occurred_at >= $2) AS "reads!",
       count(DISTINCT e.user_id) FILTER (WHERE e.occurred_at >= $2) AS "readers!",
       count(*) FILTER (WHERE e.occurred_at < $2) AS "previous_reads!"
  FROM user_webtoon_events e
  JOIN webtoon_genres wg ON wg.webtoon_id = e.webtoon_id
  JOIN genres g ON g.id = wg.genre_id
 WHERE e.kind = 'episode_read' AND e.occurred_at >= $1 AND e.occurred_at < $3
 GROUP BY g.name
