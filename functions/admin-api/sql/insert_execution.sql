-- An execution an operator asked for, before its job is invoked.
INSERT INTO job_executions (execution_id, job, input, requested_by, request_id)
VALUES ($1, $2, $3, $4, $5)
