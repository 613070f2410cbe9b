-- Pauses whose Redis status key is not written yet, oldest first.
SELECT id, campaign_id
  FROM campaign_pauses
 WHERE redis_status_at IS NULL
 ORDER BY id
 LIMIT $1
   FOR UPDATE SKIP LOCKED
