-- One row per scheduled-job run, with its summary (and the admin API's execution, if any).
INSERT INTO job_runs (job, target_date, dry_run, started_at, summary, execution_id)
VALUES ($1, $2, $3, $4, $5, $6)
