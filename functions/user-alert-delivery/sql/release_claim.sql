-- Gives back the deliveries still pending under claim $1 (the sender failed before settling).
UPDATE user_alert_deliveries SET claimed_at = NULL WHERE claimed_at = $1 AND state = 'pending'
