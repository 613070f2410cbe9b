-- The daily rows of month [$1, $2) summed into one monthly row per campaign, except a campaign
-- whose month sums past a bigint.
INSERT INTO campaign_monthly_stats
    (campaign_id, month, advertiser_id, impressions, clicks, conversions, cost_micros, days)
SELECT campaign_id, $1, max(advertiser_id), sum(impressions), sum(clicks),
       sum(conversions), sum(cost_micros), count(*)
FROM campaign_daily_stats
WHERE stat_date >= $1 AND stat_date < $2
GROUP BY campaign_id
HAVING greatest(sum(impressions), sum(clicks), sum(conversions), sum(cost_micros))
       <= 9223372036854775807
