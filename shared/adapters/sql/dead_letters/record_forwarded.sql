-- Records dead letters already produced (after retries), keeping the first sending time.
INSERT INTO kafka_dead_letters AS d
       (consumer, topic, partition, "offset", reason, attempts, sent_at)
SELECT $1, r.*, $6, now()
  FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS r
    ON CONFLICT (consumer, topic, partition, "offset") DO UPDATE
   SET sent_at = coalesce(d.sent_at, now())
