-- Claims a request id: a concurrent delivery of the same request waits here until the first
-- one's transaction ends, then finds the row taken.
INSERT INTO webtoon_requests (request_id, kind, outcome, completion)
VALUES ($1, $2, 'pending', '{}')
    ON CONFLICT (request_id) DO NOTHING
