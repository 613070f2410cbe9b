-- One row per scheduled-job run, with its summary.
INSERT INTO job_runs (job, target_date, dry_run, started_at, summary)
VALUES ($1, $2, $3, $4, $5)
