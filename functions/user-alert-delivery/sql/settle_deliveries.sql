-- Settles claimed deliveries (claim $6): state $5[i] ('delivered', 'gone' or, to give the claim
-- back after a transient failure, 'pending') with error $7[i].
UPDATE user_alert_deliveries d
   SET state = s.state,
       last_error = s.error,
       claimed_at = CASE WHEN s.state = 'pending' THEN NULL ELSE d.claimed_at END,
       settled_at = CASE WHEN s.state = 'pending' THEN NULL ELSE now() END
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[])
       AS s(alert_id, user_id, channel, target, state, error)
 WHERE d.alert_id = s.alert_id AND d.user_id = s.user_id
   AND d.channel = s.channel AND d.target = s.target AND d.claimed_at = $6
