-- Gives claim $5's unsent dead letters back: the next delivery claims them again.
DELETE FROM kafka_dead_letters d
 USING unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, off)
 WHERE d.consumer = $1 AND d.topic = r.topic AND d.partition = r.partition
   AND d."offset" = r.off AND d.claimed_at = $5 AND d.sent_at IS NULL
