-- Opens (or re-opens and updates) day $1's review items, one per campaign 5 % or more off.
INSERT INTO rollup_reviews
       (stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio)
SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::bigint[],
                         $6::bigint[], $7::float8[])
ON CONFLICT (stat_date, campaign_id) DO UPDATE SET
    advertiser_id = EXCLUDED.advertiser_id, metric = EXCLUDED.metric,
    rolled_up = EXCLUDED.rolled_up, raw = EXCLUDED.raw,
    difference_ratio = EXCLUDED.difference_ratio, status = 'open'
