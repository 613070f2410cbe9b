-- Corrections queued while Redis was unreachable, oldest first; a concurrent flush skips the
-- rows this one holds. A pending correction always has its delta.
SELECT id, topic, partition, "offset", produced_at, campaign_id, spend_date,
       correction_delta AS "correction_delta!"
  FROM budget_sync_accuracy
 WHERE correction = 'pending'
 ORDER BY id
 LIMIT $1
   FOR UPDATE SKIP LOCKED
