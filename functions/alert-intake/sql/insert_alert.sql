-- Stores an alert; its id names it from here on.
INSERT INTO alerts (alert_kind, app_name, title, body, severity, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id
