-- One page of alert recipients after user $3 (in user id order): users subscribed to app $1's
-- alerts of kind $2 or of every kind ('*'), the user active and not muted now, and none of the
-- user's subscriptions that match (the kind or '*') muted: a mute wins over a subscription.
SELECT DISTINCT s.user_id
  FROM alert_subscriptions s
  JOIN alert_users u ON u.user_id = s.user_id
 WHERE s.app_name = $1 AND s.alert_kind IN ($2, '*')
   AND u.active AND (u.muted_until IS NULL OR u.muted_until <= now())
   AND NOT EXISTS (SELECT 1 FROM alert_subscriptions m
                    WHERE m.user_id = s.user_id AND m.app_name = $1
                      AND m.alert_kind IN ($2, '*') AND m.muted)
   AND ($3::text IS NULL OR s.user_id > $3)
 ORDER BY s.user_id
 LIMIT $4
