-- Forgets connection $1 (a $disconnect for a connection already gone changes nothing).
DELETE FROM ws_connections WHERE connection_id = $1
