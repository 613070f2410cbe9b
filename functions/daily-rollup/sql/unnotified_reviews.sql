-- Open review items the operators have not been told about, of any day, largest first.
SELECT stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio
FROM rollup_reviews
WHERE notified_at IS NULL AND status = 'open'
ORDER BY difference_ratio DESC, stat_date, campaign_id
