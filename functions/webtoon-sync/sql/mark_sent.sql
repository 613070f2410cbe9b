UPDATE webtoon_requests SET completion_sent_at = now() WHERE request_id = $1
