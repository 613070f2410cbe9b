-- Titles whose request is on the queue: their new hash, and the request that carries it.
INSERT INTO catalog_entries AS c
       (platform, external_id, content_hash, request_id, first_seen_on, changed_on, seen_on)
SELECT $1, e.external_id, e.content_hash, e.request_id, $5, $5, $5
  FROM UNNEST($2::text[], $3::text[], $4::text[]) AS e (external_id, content_hash, request_id)
    ON CONFLICT (platform, external_id) DO UPDATE
   SET content_hash = EXCLUDED.content_hash,
       request_id = EXCLUDED.request_id,
       changed_on = EXCLUDED.changed_on,
       seen_on = greatest(c.seen_on, EXCLUDED.seen_on)
