-- Alert $1's fan-out is complete: a replayed alert-created record publishes nothing.
UPDATE alert_fanouts SET completed_at = now() WHERE alert_id = $1
