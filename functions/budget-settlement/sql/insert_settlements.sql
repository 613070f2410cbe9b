-- Day $1's items summed per advertiser (campaigns without a known advertiser stay items only).
INSERT INTO budget_settlements
       (advertiser_id, settle_date, campaigns, db_spent, redis_spent, difference, matched,
        redis_over, db_over, missing_in_redis, missing_in_db)
SELECT advertiser_id, settle_date, count(*), coalesce(sum(db_spent), 0),
       coalesce(sum(redis_spent), 0), sum(difference),
       count(*) FILTER (WHERE classification = 'match'),
       count(*) FILTER (WHERE classification = 'redis_over'),
       count(*) FILTER (WHERE classification = 'db_over'),
       count(*) FILTER (WHERE classification = 'missing_in_redis'),
       count(*) FILTER (WHERE classification = 'missing_in_db')
  FROM budget_settlement_items
 WHERE settle_date = $1 AND advertiser_id IS NOT NULL
 GROUP BY advertiser_id, settle_date
