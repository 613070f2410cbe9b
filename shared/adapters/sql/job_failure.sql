-- A run that failed: the row it recorded before failing (its summary published after it, say)
-- gets the error; without one, a row of its own with a failure summary. The error is bounded.
WITH recorded AS (
    UPDATE job_runs SET error = $7, finished_at = now()
    WHERE job = $1 AND started_at = $4
    RETURNING id
)
INSERT INTO job_runs (job, target_date, dry_run, started_at, summary, execution_id, error)
SELECT $1, $2, $3, $4, $5, $6, $7
WHERE NOT EXISTS (SELECT 1 FROM recorded)
