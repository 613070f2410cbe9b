-- Gives claim $2's unsent messages back to the next flush.
UPDATE outbox SET claimed_at = NULL
 WHERE id = ANY($1) AND claimed_at = $2 AND sent_at IS NULL
