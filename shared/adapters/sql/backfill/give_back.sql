-- Months whose jobs message could not be sent: PENDING again, for the next run to queue.
UPDATE cdp_months m
   SET state = 'PENDING', claim_token = NULL, queued_at = NULL
  FROM unnest($1::BIGINT[], $2::DATE[], $3::UUID[]) AS g(advertiser_id, month, token)
 WHERE m.advertiser_id = g.advertiser_id
   AND m.month = g.month
   AND m.claim_token = g.token
   AND m.state = 'QUEUED'
