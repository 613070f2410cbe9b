-- An alert and its delivery counts by state.
SELECT a.id, a.alert_kind, a.app_name, a.severity, a.created_at,
       (SELECT count(*) FROM user_alert_statuses s WHERE s.alert_id = a.id) AS "recipients!",
       (SELECT count(*) FROM user_alert_deliveries d WHERE d.alert_id = a.id AND d.state = 'pending') AS "pending!",
       (SELECT count(*) FROM user_alert_deliveries d WHERE d.alert_id = a.id AND d.state = 'delivered') AS "delivered!",
       (SELECT count(*) FROM user_alert_deliveries d WHERE d.alert_id = a.id AND d.state = 'gone') AS "gone!",
       (SELECT count(*) FROM user_alert_deliveries d WHERE d.alert_id = a.id AND d.state = 'failed') AS "failed!"
FROM alerts a
WHERE a.id = $1
