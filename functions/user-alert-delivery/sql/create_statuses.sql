-- Creates the status of each (alert $1[i], user $2[i]) not created yet, with one pending
-- delivery per live channel of the user: each push endpoint, each WebSocket connection. A user
-- with none is `stored`. A pair seen before (a replay, a duplicate) creates nothing; returns
-- how many statuses were created.
WITH wanted AS (
    SELECT DISTINCT w.alert_id, w.user_id
      FROM unnest($1::bigint[], $2::text[]) AS w(alert_id, user_id)
      JOIN alerts a ON a.id = w.alert_id
), channels AS (
    SELECT w.alert_id, w.user_id, 'push' AS channel, p.endpoint_arn AS target
      FROM wanted w JOIN push_endpoints p ON p.user_id = w.user_id
    UNION ALL
    SELECT w.alert_id, w.user_id, 'web', c.connection_id
      FROM wanted w JOIN ws_connections c ON c.user_id = w.user_id
), created AS (
    INSERT INTO user_alert_statuses (alert_id, user_id, status)
    SELECT w.alert_id, w.user_id,
           CASE WHEN EXISTS (SELECT 1 FROM channels c
                              WHERE c.alert_id = w.alert_id AND c.user_id = w.user_id)
                THEN 'delivering' ELSE 'stored' END
      FROM wanted w
        ON CONFLICT (alert_id, user_id) DO NOTHING
    RETURNING alert_id, user_id
), deliveries AS (
    INSERT INTO user_alert_deliveries (alert_id, user_id, channel, target)
    SELECT c.alert_id, c.user_id, c.channel, c.target
      FROM channels c JOIN created USING (alert_id, user_id)
    RETURNING 1
)
SELECT count(*) AS "created!", (SELECT count(*) FROM deliveries) AS "deliveries!" FROM created
