-- The admin API's redrive requests for dead-letter topic $1 are done: $2 records replayed.
UPDATE redrive_requests SET redriven_at = now(), redriven = $2
WHERE dlq_topic = $1 AND redriven_at IS NULL
