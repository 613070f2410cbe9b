-- Forgets WebSocket connections API Gateway reports gone, unless they connected in the last
-- $2 seconds: a post can meet a 410 while a new connection's handshake is still finishing.
DELETE FROM ws_connections
 WHERE connection_id = ANY($1) AND connected_at < now() - make_interval(secs => $2)
