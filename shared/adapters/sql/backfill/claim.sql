-- Queues months under a new token, each only if it is still as it was read (state $3, token
-- $4): of two runs at once, the second waits for the first's row lock, finds the month changed
-- and leaves it, so a month is queued once.
UPDATE cdp_months m
   SET state = 'QUEUED', claim_token = gen_random_uuid(), queued_at = now(), started_at = NULL
  FROM unnest($1::BIGINT[], $2::DATE[], $3::TEXT[], $4::UUID[]) AS c(advertiser_id, month, state, token)
 WHERE m.advertiser_id = c.advertiser_id
   AND m.month = c.month
   AND m.state = c.state
   AND m.claim_token IS NOT DISTINCT FROM c.token
RETURNING m.advertiser_id, m.month, m.claim_token AS "claim_token!", m.next_attempt_at
