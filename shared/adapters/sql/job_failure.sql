-- A run that failed: its summary says so, its error is bounded.
INSERT INTO job_runs (job, target_date, dry_run, started_at, summary, execution_id, error)
VALUES ($1, $2, $3, $4, $5, $6, $7)
