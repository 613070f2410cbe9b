-- An operator's retry of FAILED month $2 of advertiser $1: PENDING with its retries back.
-- Returns whether the month was FAILED (retrying a month in any other state changes nothing).
UPDATE cdp_months
   SET state = 'PENDING', retry_count = 0, next_attempt_at = NULL, claim_token = NULL
 WHERE advertiser_id = $1 AND month = $2 AND state = 'FAILED'
RETURNING true AS "retried!"
