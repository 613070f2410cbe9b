-- A request already decided, with its completion and whether that was sent.
SELECT completion AS "completion: Json<Completion>",
       completion_sent_at IS NOT NULL AS "completion_sent!"
  FROM webtoon_requests
 WHERE request_id = $1 AND outcome <> 'pending'
