-- Records a page the broker acknowledged: the cursor moves to user $2, $3 more published.
UPDATE alert_fanouts SET last_user_id = $2, published = published + $3 WHERE alert_id = $1
