-- Day $1's open items whose campaigns are no longer off.
UPDATE rollup_reviews SET status = 'resolved'
WHERE stat_date = $1 AND status = 'open' AND campaign_id <> ALL($2)
