-- An execution and its run, once the job recorded one.
SELECT e.execution_id, e.job, e.input, e.requested_by, e.requested_at,
       r.id AS "run_id?", r.finished_at AS "finished_at?", r.error AS "error?"
FROM job_executions e
LEFT JOIN LATERAL (
    SELECT id, finished_at, error FROM job_runs
    WHERE execution_id = e.execution_id ORDER BY id DESC LIMIT 1
) r ON true
WHERE e.execution_id = $1
