-- How many deliveries of the pairs (alert $1[i], user $2[i]) are still pending under another
-- sender's live claim (younger than $3 seconds): a batch must not be confirmed while they are.
SELECT count(*) AS "held!"
  FROM user_alert_deliveries d
  JOIN unnest($1::bigint[], $2::text[]) AS w(alert_id, user_id)
    ON d.alert_id = w.alert_id AND d.user_id = w.user_id
 WHERE d.state = 'pending' AND d.claimed_at >= now() - make_interval(secs => $3)
