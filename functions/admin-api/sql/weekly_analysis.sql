-- The stored analysis of the week holding $1, or the latest one when $1 is null.
SELECT week_start, genres, rising, falling, daily, weekly_active, reads, reads_per_reader, computed_at
  FROM weekly_analyses
 WHERE ($1::date IS NULL OR week_start = $1)
 ORDER BY week_start DESC
 LIMIT 1
