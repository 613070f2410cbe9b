-- Forgets WebSocket connections API Gateway reports gone.
DELETE FROM ws_connections WHERE connection_id = ANY($1)
