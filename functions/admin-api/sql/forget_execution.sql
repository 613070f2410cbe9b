-- An execution whose job could not be invoked: it never ran.
DELETE FROM job_executions WHERE execution_id = $1
