-- A review item for each campaign whose day $1 (from its hourly windows) or month [$2, $3) (from
-- its daily rows) sums past a bigint: such a campaign gets no daily or monthly row. Runs after
-- the raw check, whose item for the campaign it replaces.
WITH sums AS (
    SELECT campaign_id, max(advertiser_id) AS advertiser_id, 'day' AS period,
           sum(impressions) AS impressions, sum(clicks) AS clicks,
           sum(conversions) AS conversions, sum(cost_micros) AS cost_micros
      FROM performance_metrics
     WHERE window_size = '1h' AND window_date = $1
     GROUP BY campaign_id
    UNION ALL
    SELECT campaign_id, max(advertiser_id), 'month', sum(impressions), sum(clicks),
           sum(conversions), sum(cost_micros)
      FROM campaign_daily_stats
     WHERE stat_date >= $2 AND stat_date < $3
     GROUP BY campaign_id),
over AS (
    SELECT DISTINCT ON (campaign_id) campaign_id, advertiser_id,
           format('%s: the %s sums past bigint',
                  CASE WHEN impressions > 9223372036854775807 THEN 'impressions'
                       WHEN clicks > 9223372036854775807 THEN 'clicks'
                       WHEN conversions > 9223372036854775807 THEN 'conversions'
                       ELSE 'cost_micros' END,
                  period) AS metric
      FROM sums
     WHERE greatest(impressions, clicks, conversions, cost_micros) > 9223372036854775807
     ORDER BY campaign_id, period)
INSERT INTO rollup_reviews
    (stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio)
SELECT $1, campaign_id, advertiser_id, metric, 0, 0, 1.0 FROM over
ON CONFLICT (stat_date, campaign_id) DO UPDATE SET
    advertiser_id = EXCLUDED.advertiser_id, metric = EXCLUDED.metric,
    rolled_up = EXCLUDED.rolled_up, raw = EXCLUDED.raw,
    difference_ratio = EXCLUDED.difference_ratio, status = 'open',
    -- A new finding about the campaign's day: announced even if the raw check's was.
    notified_at = CASE WHEN rollup_reviews.metric = EXCLUDED.metric
                       THEN rollup_reviews.notified_at END
