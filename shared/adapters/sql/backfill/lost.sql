-- Months QUEUED since before $1: their message was lost (or parked in the DLQ). PENDING again,
-- for the next advance to queue under a new token; not a failure of the month.
UPDATE cdp_months
   SET state = 'PENDING', claim_token = NULL, queued_at = NULL
 WHERE state = 'QUEUED' AND queued_at < $1
RETURNING advertiser_id
