-- The batch's windows on a replay: a window already stored is left as it is.
INSERT INTO performance_metrics
       (campaign_id, advertiser_id, window_size, window_start, window_date, impressions, clicks,
        conversions, cost_micros)
SELECT *
  FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::date[],
              $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
    ON CONFLICT (campaign_id, window_size, window_start) DO NOTHING
