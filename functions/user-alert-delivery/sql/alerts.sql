-- What the alerts $1 say, for their deliveries.
SELECT id, alert_kind, app_name, title, body, severity FROM alerts WHERE id = ANY($1)
