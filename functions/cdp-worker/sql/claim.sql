-- Month $2 of advertiser $1, queued under token $3, starts running: once per token, unless it
-- has been running for longer than the lease of $4 seconds (the function's timeout: the worker
-- that ran it is gone and SQS delivered the message again). Returns its retry count; no row:
-- a duplicate message, or the month moved on.
UPDATE cdp_months
   SET state = 'RUNNING', started_at = now()
 WHERE advertiser_id = $1
   AND month = $2
   AND claim_token = $3
   AND (state = 'QUEUED' OR (state = 'RUNNING' AND started_at < now() - make_interval(secs => $4)))
RETURNING retry_count
