-- Each job's latest run.
SELECT DISTINCT ON (job) id, job, target_date, dry_run, started_at, finished_at, execution_id,
       error, summary
FROM job_runs
WHERE job = ANY($1)
ORDER BY job, started_at DESC, id DESC
