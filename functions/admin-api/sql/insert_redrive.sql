-- A redrive request for the dead-letter topic $2 of consumer $1.
INSERT INTO redrive_requests (consumer, dlq_topic, requested_by, request_id)
VALUES ($1, $2, $3, $4)
RETURNING id, requested_at
