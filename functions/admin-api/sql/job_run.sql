-- One run.
SELECT id, job, target_date, dry_run, started_at, finished_at, execution_id, error, summary
FROM job_runs
WHERE id = $1
