-- A page of runs, newest first before cursor id $1, of job $2, failed or not ($3), started in
-- [$4, $5).
SELECT id, job, target_date, dry_run, started_at, finished_at, execution_id, error, summary
FROM job_runs
WHERE id < $1
  AND ($2::text IS NULL OR job = $2)
  AND ($3::boolean IS NULL OR (error IS NOT NULL) = $3)
  AND ($4::timestamptz IS NULL OR started_at >= $4)
  AND ($5::timestamptz IS NULL OR started_at < $5)
ORDER BY id DESC
LIMIT $6
