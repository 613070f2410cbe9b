-- One page of alert recipients after user $3 (in user id order): users subscribed to app $1's
-- alerts of kind $2 or of every kind ('*'), the subscription not muted, the user active and not
-- muted now.
SELECT DISTINCT s.user_id
  FROM alert_subscriptions s
  JOIN alert_users u ON u.user_id = s.user_id
 WHERE s.app_name = $1 AND s.alert_kind IN ($2, '*') AND NOT s.muted
   AND u.active AND (u.muted_until IS NULL OR u.muted_until <= now())
   AND ($3::text IS NULL OR s.user_id > $3)
 ORDER BY s.user_id
 LIMIT $4
