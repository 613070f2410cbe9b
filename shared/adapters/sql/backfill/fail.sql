-- Months that failed, each under the token it ran (or was queued) with: FAILED with its error,
-- retry count and next attempt (none when exhausted).
UPDATE cdp_months m
   SET state = 'FAILED', error = f.error, retry_count = f.retry_count,
       next_attempt_at = f.next_attempt_at
  FROM unnest($1::BIGINT[], $2::DATE[], $3::UUID[], $4::TEXT[], $5::INT[], $6::TIMESTAMPTZ[])
       AS f(advertiser_id, month, token, error, retry_count, next_attempt_at)
 WHERE m.advertiser_id = f.advertiser_id
   AND m.month = f.month
   AND m.claim_token = f.token
   AND m.state IN ('QUEUED', 'RUNNING')
