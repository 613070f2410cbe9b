-- Activates or deactivates advertiser $1 (an operator's decision: reason $3 and operator $5
-- when deactivating).
-- Activating gives its exhausted months their retries back, or the next run would deactivate
-- it again at once. Returns whether the advertiser exists.
WITH advertiser AS (
    UPDATE advertisers
       SET active = $2,
           deactivated_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
           deactivated_by = CASE WHEN $2 THEN NULL ELSE $5 END,
           updated_at = now()
     WHERE advertiser_id = $1
 RETURNING advertiser_id
), revived AS (
    UPDATE cdp_months m
       SET state = 'PENDING', retry_count = 0, next_attempt_at = NULL, claim_token = NULL
      FROM advertiser a
     WHERE $2 AND m.advertiser_id = a.advertiser_id AND m.state = 'FAILED' AND m.retry_count > $4
)
SELECT count(*) > 0 AS "found!" FROM advertiser
