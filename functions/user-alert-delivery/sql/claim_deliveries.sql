-- Claims the pending deliveries of the pairs (alert $1[i], user $2[i]): those never claimed and
-- those whose claim is older than $3 seconds (its sender died). Rows another sender holds are
-- skipped. A push delivery comes with its endpoint's platform (NULL: the endpoint was removed).
-- One statement, one now(): the claim's time is the token the settling statements match on.
UPDATE user_alert_deliveries d
   SET claimed_at = now(), attempts = d.attempts + 1
  FROM (SELECT x.alert_id, x.user_id, x.channel, x.target
          FROM user_alert_deliveries x
          JOIN unnest($1::bigint[], $2::text[]) AS w(alert_id, user_id)
            ON x.alert_id = w.alert_id AND x.user_id = w.user_id
         WHERE x.state = 'pending'
           AND (x.claimed_at IS NULL OR x.claimed_at < now() - make_interval(secs => $3))
           FOR UPDATE OF x SKIP LOCKED) AS due
 WHERE d.alert_id = due.alert_id AND d.user_id = due.user_id
   AND d.channel = due.channel AND d.target = due.target
RETURNING d.alert_id, d.user_id, d.channel, d.target,
          (SELECT p.platform FROM push_endpoints p WHERE p.endpoint_arn = d.target) AS platform,
          d.claimed_at AS "claimed_at!"
