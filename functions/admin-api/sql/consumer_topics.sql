-- The topics consumer $1 dead-lettered records of.
SELECT DISTINCT topic AS "topic!" FROM kafka_dead_letters WHERE consumer = $1 ORDER BY 1
