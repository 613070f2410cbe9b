-- The alert the caller's dedupe key names inside its window.
SELECT alert_id FROM alert_dedupe_keys
 WHERE created_by = $1 AND dedupe_key = $2 AND expires_at > now()
