-- Performance facts of advertiser $1 for the days [$2, $3): one row per campaign and day, from
-- the daily aggregates, in a fixed order (the same data gives the same file).
SELECT campaign_id, stat_date, impressions, clicks, conversions, cost_micros
  FROM campaign_daily_stats
 WHERE advertiser_id = $1 AND stat_date >= $2 AND stat_date < $3
 ORDER BY campaign_id, stat_date
