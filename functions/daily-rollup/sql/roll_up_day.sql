-- Day $1's 1-hour windows summed into one daily row per campaign. A campaign whose day sums
-- past a bigint is left out (review_overflows.sql opens its review item).
WITH rolled AS (
    INSERT INTO campaign_daily_stats
        (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions,
         cost_micros, hours)
    SELECT campaign_id, $1, max(advertiser_id), sum(impressions), sum(clicks),
           sum(conversions), sum(cost_micros), count(*)
    FROM performance_metrics
    WHERE window_size = '1h' AND window_date = $1
    GROUP BY campaign_id
    HAVING greatest(sum(impressions), sum(clicks), sum(conversions), sum(cost_micros))
           <= 9223372036854775807
    RETURNING hours)
SELECT count(*) AS "daily_rows!", coalesce(sum(hours), 0)::bigint AS "hourly_rows!" FROM rolled
