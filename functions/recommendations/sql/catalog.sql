-- Every title with its genres and authors.
SELECT w.id AS "id!",
       coalesce(array_agg(DISTINCT g.name) FILTER (WHERE g.name IS NOT NULL), '{}') AS "genres!",
       coalesce(array_agg(DISTINCT a.name) FILTER (WHERE a.name IS NOT NULL), '{}') AS "authors!"
  FROM webtoons w
  LEFT JOIN webtoon_genres wg ON wg.webtoon_id = w.id
  LEFT JOIN genres g ON g.id = wg.genre_id
  LEFT JOIN webtoon_authors wa ON wa.webtoon_id = w.id
  LEFT JOIN authors a ON a.id = wa.author_id
 GROUP BY w.id
