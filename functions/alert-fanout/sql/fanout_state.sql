-- What alert $1's fan-out needs: the alert's app and kind as stored (not as the record says),
-- and how far an earlier attempt got. No row: no such alert.
SELECT a.app_name, a.alert_kind, f.last_user_id, f.completed_at IS NOT NULL AS "completed!"
  FROM alerts a LEFT JOIN alert_fanouts f ON f.alert_id = a.id
 WHERE a.id = $1
