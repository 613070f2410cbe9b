-- Unchanged titles the feed still lists.
UPDATE catalog_entries
   SET seen_on = $3
 WHERE platform = $1
   AND external_id = ANY($2::text[])
   AND seen_on < $3
