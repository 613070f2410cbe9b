-- An operator's retry of FAILED month $2 of active advertiser $1: PENDING with its retries
-- back. Returns whether the month was retried: not for a month in any other state, nor for an
-- inactive advertiser (activating it revives its exhausted months).
UPDATE cdp_months m
   SET state = 'PENDING', retry_count = 0, next_attempt_at = NULL, claim_token = NULL
  FROM advertisers a
 WHERE m.advertiser_id = $1 AND m.month = $2 AND m.state = 'FAILED'
   AND a.advertiser_id = m.advertiser_id AND a.active
RETURNING true AS "retried!"
