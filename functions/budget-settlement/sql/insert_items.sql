-- One row per campaign settled on day $1.
INSERT INTO budget_settlement_items
       (settle_date, campaign_id, advertiser_id, redis_spent, db_spent, difference, classification)
SELECT $1, *
  FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[])
