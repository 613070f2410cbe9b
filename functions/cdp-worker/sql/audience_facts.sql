-- Audience facts of advertiser $1 for [$2, $3): one row per device id as stored (retention has
-- replaced those older than 30 days by its pseudonym), from the raw events, in a fixed order.
-- Events without a device count toward no device.
SELECT device_id AS "device_id!",
       count(*) FILTER (WHERE event_type = 'impression') AS "impressions!",
       count(*) FILTER (WHERE event_type = 'click') AS "clicks!",
       count(*) FILTER (WHERE event_type = 'conversion') AS "conversions!",
       sum(cost_micros)::BIGINT AS "cost_micros!",
       min(occurred_at) AS "first_seen!",
       max(occurred_at) AS "last_seen!"
  FROM ad_events
 WHERE advertiser_id = $1 AND occurred_at >= $2 AND occurred_at < $3 AND device_id IS NOT NULL
 GROUP BY device_id
 ORDER BY device_id
