-- What key $2 of subject $1 holds.
SELECT fingerprint, status, answer
FROM admin_idempotency
WHERE subject = $1 AND idempotency_key = $2
