UPDATE webtoon_requests SET webtoon_id = $2, outcome = $3, completion = $4
 WHERE request_id = $1
