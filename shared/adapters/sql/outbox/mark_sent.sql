-- Marks claim $2's messages sent.
UPDATE outbox SET sent_at = now() WHERE id = ANY($1) AND claimed_at = $2
