-- Adds notices in the caller's transaction; a dedup key this producer already has is left alone.
INSERT INTO outbox (producer, dedup_key, subject, body, attributes, message_key)
SELECT $1, m.*
  FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[]) AS m
    ON CONFLICT (producer, dedup_key) DO NOTHING
