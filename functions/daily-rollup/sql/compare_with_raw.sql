-- Day $1's daily rows beside the raw events of [$2, $3), the same day in KST, for the campaigns
-- that differ at all (usually none).
WITH raw AS (
    SELECT campaign_id, max(advertiser_id) AS advertiser_id,
           count(*) FILTER (WHERE event_type = 'impression') AS impressions,
           count(*) FILTER (WHERE event_type = 'click') AS clicks,
           count(*) FILTER (WHERE event_type = 'conversion') AS conversions,
           least(sum(cost_micros), 9223372036854775807)::bigint AS cost_micros
    FROM ad_events
    WHERE occurred_at >= $2 AND occurred_at < $3
    GROUP BY campaign_id),
daily AS (SELECT * FROM campaign_daily_stats WHERE stat_date = $1),
joined AS (
    SELECT coalesce(d.campaign_id, r.campaign_id) AS campaign_id,
           coalesce(d.advertiser_id, r.advertiser_id) AS advertiser_id,
           coalesce(d.impressions, 0) AS d_impressions, coalesce(d.clicks, 0) AS d_clicks,
           coalesce(d.conversions, 0) AS d_conversions,
           coalesce(d.cost_micros, 0) AS d_cost,
           coalesce(r.impressions, 0) AS r_impressions, coalesce(r.clicks, 0) AS r_clicks,
           coalesce(r.conversions, 0) AS r_conversions,
           coalesce(r.cost_micros, 0) AS r_cost
    FROM daily d FULL JOIN raw r ON r.campaign_id = d.campaign_id)
SELECT campaign_id AS "campaign_id!", advertiser_id AS "advertiser_id!",
       d_impressions AS "d_impressions!", d_clicks AS "d_clicks!",
       d_conversions AS "d_conversions!", d_cost AS "d_cost!",
       r_impressions AS "r_impressions!", r_clicks AS "r_clicks!",
       r_conversions AS "r_conversions!", r_cost AS "r_cost!"
  FROM joined
WHERE (d_impressions, d_clicks, d_conversions, d_cost)
      <> (r_impressions, r_clicks, r_conversions, r_cost)
