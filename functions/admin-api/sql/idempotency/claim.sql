-- Claims key $2 of subject $1 for a request with fingerprint $3; a claim in progress for more
-- than a minute (its request died) or an answer older than a day is taken over.
INSERT INTO admin_idempotency (subject, idempotency_key, fingerprint)
VALUES ($1, $2, $3)
ON CONFLICT (subject, idempotency_key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, claimed_at = now(), status = NULL, answer = NULL
WHERE (admin_idempotency.status IS NULL AND admin_idempotency.claimed_at < now() - interval '1 minute')
   OR admin_idempotency.claimed_at < now() - interval '1 day'
RETURNING true AS "claimed!"
