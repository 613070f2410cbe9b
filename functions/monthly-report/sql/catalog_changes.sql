-- Titles created in the month ($1 to $2), and older titles updated in it.
SELECT count(*) FILTER (WHERE created_at >= $1 AND created_at < $2) AS "new_titles!",
       count(*) FILTER (WHERE created_at < $1 AND updated_at >= $1 AND updated_at < $2) AS "updated_titles!"
  FROM webtoons
