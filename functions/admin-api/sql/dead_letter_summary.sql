-- Per consumer: dead letters, those claimed but not yet sent, the latest, the latest reasons, and
-- since when a redrive request waits.
SELECT consumer AS "consumer!",
       count(*) AS "total!",
       count(*) FILTER (WHERE sent_at IS NULL) AS "unsent!",
       max(created_at) AS "last_at!",
       (SELECT array_agg(reason ORDER BY created_at DESC) FROM (
           SELECT reason, created_at FROM kafka_dead_letters r
           WHERE r.consumer = d.consumer ORDER BY created_at DESC LIMIT 5) latest)
           AS "recent_reasons!",
       (SELECT min(requested_at) FROM redrive_requests q
        WHERE q.consumer = d.consumer AND q.redriven_at IS NULL) AS pending_redrive_since
FROM kafka_dead_letters d
GROUP BY consumer
ORDER BY consumer
