-- Claims the rejected records of consumer $1 at time $6: a record never seen, or one whose
-- unsent claim is older than $7 seconds. Returns the records this claim holds.
INSERT INTO kafka_dead_letters AS d
       (consumer, topic, partition, "offset", reason, claimed_at, sent_at)
SELECT $1, r.*, $6, NULL
  FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS r
    ON CONFLICT (consumer, topic, partition, "offset") DO UPDATE
   SET claimed_at = $6, reason = EXCLUDED.reason
 WHERE d.sent_at IS NULL AND d.claimed_at < $6 - make_interval(secs => $7)
RETURNING topic, partition, "offset"
