-- Which of these records consumer $1 has already sent to its dead-letter topic.
SELECT d.topic, d.partition, d."offset"
  FROM kafka_dead_letters d
  JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, off)
    ON d.topic = r.topic AND d.partition = r.partition AND d."offset" = r.off
 WHERE d.consumer = $1 AND d.sent_at IS NOT NULL
