-- Marks claim $5's dead letters sent (a claim taken over by another invocation is not ours).
UPDATE kafka_dead_letters d SET sent_at = now()
  FROM unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, off)
 WHERE d.consumer = $1 AND d.topic = r.topic AND d.partition = r.partition
   AND d."offset" = r.off AND d.claimed_at = $5 AND d.sent_at IS NULL
