-- Each day's offline evaluation per arm, from the day's latest successful recommendations run.
SELECT DISTINCT ON (r.target_date, e.variant)
       r.target_date AS "day!",
       coalesce(e.variant, '') AS "variant!",
       coalesce(e.readers, 0) AS "readers!",
       coalesce(e.precision_at_10, 0) AS "precision!",
       coalesce(e.recall_at_10, 0) AS "recall!"
  FROM job_runs r
 CROSS JOIN LATERAL jsonb_to_recordset(r.summary -> 'details' -> 'evaluation')
       AS e (variant TEXT, readers BIGINT, precision_at_10 FLOAT8, recall_at_10 FLOAT8)
 WHERE r.job = 'recommendations' AND NOT r.dry_run AND r.error IS NULL
   AND jsonb_typeof(r.summary -> 'details' -> 'evaluation') = 'array'
   AND r.target_date >= $1 AND r.target_date < $2
 ORDER BY r.target_date, e.variant, r.finished_at DESC
