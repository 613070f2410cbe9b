-- The answer the request under key $2 of subject $1 gave, kept for its repeats.
UPDATE admin_idempotency SET status = $3, answer = $4
WHERE subject = $1 AND idempotency_key = $2
