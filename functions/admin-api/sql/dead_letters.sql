-- A page of consumer $1's dead letters, newest first: the first ($8) or after cursor ($2, $3,
-- $4, $5); from topic $6 only if given.
SELECT topic, partition, "offset", reason, attempts, created_at, sent_at
FROM kafka_dead_letters
WHERE consumer = $1
  AND ($8 OR (created_at, topic, partition, "offset") < ($2, $3, $4, $5))
  AND ($6::text IS NULL OR topic = $6)
ORDER BY created_at DESC, topic DESC, partition DESC, "offset" DESC
LIMIT $7
