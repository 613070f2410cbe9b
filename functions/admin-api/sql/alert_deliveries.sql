-- A page of alert $1's deliveries by recipient and channel after cursor ($2, $3, $4), in state
-- $5 and channel $6.
SELECT user_id, channel, target, state, attempts, last_error, settled_at
FROM user_alert_deliveries
WHERE alert_id = $1
  AND (user_id, channel, target) > ($2, $3, $4)
  AND ($5::text IS NULL OR state = $5)
  AND ($6::text IS NULL OR channel = $6)
ORDER BY user_id, channel, target
LIMIT $7
