-- The advertisers of campaigns that have a counter but no events on the day.
SELECT campaign_id, advertiser_id FROM campaigns WHERE campaign_id = ANY($1)
