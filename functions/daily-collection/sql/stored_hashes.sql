-- What the last collection saw of a platform's titles.
SELECT external_id, content_hash, seen_on
  FROM catalog_entries
 WHERE platform = $1
