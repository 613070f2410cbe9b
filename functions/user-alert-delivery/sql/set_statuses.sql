-- Sets the statuses the deliveries came to.
UPDATE user_alert_statuses s SET status = n.status, updated_at = now()
  FROM unnest($1::bigint[], $2::text[], $3::text[]) AS n(alert_id, user_id, status)
 WHERE s.alert_id = n.alert_id AND s.user_id = n.user_id AND s.status <> n.status
