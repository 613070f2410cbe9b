-- Resolves a review item by hand; resolving a resolved one keeps its first resolution.
UPDATE rollup_reviews
SET status = 'resolved',
    resolved_by = CASE WHEN status = 'open' THEN $3 ELSE resolved_by END,
    resolved_at = CASE WHEN status = 'open' THEN now() ELSE resolved_at END,
    resolution = CASE WHEN status = 'open' THEN $4 ELSE resolution END
WHERE stat_date = $1 AND campaign_id = $2
RETURNING stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio,
          status, opened_at, resolved_by, resolved_at, resolution
