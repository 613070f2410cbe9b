-- The delivery states of the pairs (alert $1[i], user $2[i]) whose status is still delivering.
SELECT s.alert_id, s.user_id, d.state AS "state?"
  FROM user_alert_statuses s
  JOIN unnest($1::bigint[], $2::text[]) AS w(alert_id, user_id)
    ON s.alert_id = w.alert_id AND s.user_id = w.user_id
  LEFT JOIN user_alert_deliveries d ON d.alert_id = s.alert_id AND d.user_id = s.user_id
 WHERE s.status = 'delivering'
