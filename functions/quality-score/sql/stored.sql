-- The batch's campaigns as stored, locked in campaign order so that two invocations sharing
-- campaigns cannot deadlock.
SELECT campaign_id, score, computed_at
  FROM quality_scores
 WHERE campaign_id = ANY($1)
 ORDER BY campaign_id
   FOR UPDATE
