-- Keeps connection $1 as one of user $2's live connections ($connect delivered twice: one row).
INSERT INTO ws_connections (connection_id, user_id) VALUES ($1, $2)
    ON CONFLICT (connection_id) DO NOTHING
