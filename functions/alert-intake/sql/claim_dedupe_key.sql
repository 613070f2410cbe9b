-- Makes the caller's dedupe key $2 name alert $3 for $4 seconds, unless it names another alert
-- still inside its window: then nothing is returned. A concurrent request with the same key
-- waits for this one's commit and then finds the key taken.
INSERT INTO alert_dedupe_keys (created_by, dedupe_key, alert_id, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
    ON CONFLICT (created_by, dedupe_key) DO UPDATE
   SET alert_id = EXCLUDED.alert_id, expires_at = EXCLUDED.expires_at
 WHERE alert_dedupe_keys.expires_at <= now()
RETURNING alert_id
