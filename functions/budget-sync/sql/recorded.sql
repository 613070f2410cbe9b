-- Which of these messages are recorded already.
SELECT a.topic, a.partition, a."offset"
  FROM budget_sync_accuracy a
  JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS b(topic, partition, off)
    ON a.topic = b.topic AND a.partition = b.partition AND a."offset" = b.off
