-- Operations-console alerts (SPEC §2, seed 004): intake over HTTP, fan-out on MSK, one status
-- per (alert, user), delivered to push and web.

-- What alert-intake stored. `created_by` is the caller's subject (the JWT's `sub`).
CREATE TABLE alerts (
    id          BIGSERIAL PRIMARY KEY,
    alert_kind  TEXT NOT NULL,
    app_name    TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A client's dedupe key names its first alert until the window ends; a retry within it gets that
-- alert back. Scoped to the caller, so two callers' keys never collide.
CREATE TABLE alert_dedupe_keys (
    created_by  TEXT NOT NULL,
    dedupe_key  TEXT NOT NULL,
    alert_id    BIGINT NOT NULL REFERENCES alerts (id),
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (created_by, dedupe_key)
);

-- The console's users who may receive alerts. A user inactive, or muted until a time still to
-- come, receives none.
CREATE TABLE alert_users (
    user_id      TEXT PRIMARY KEY,
    active       BOOLEAN NOT NULL DEFAULT true,
    muted_until  TIMESTAMPTZ
);

-- A user's subscription to an app's alerts of one kind, or of every kind ('*').
CREATE TABLE alert_subscriptions (
    user_id     TEXT NOT NULL REFERENCES alert_users (user_id) ON DELETE CASCADE,
    app_name    TEXT NOT NULL,
    alert_kind  TEXT NOT NULL DEFAULT '*',
    muted       BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (app_name, alert_kind, user_id)
);
CREATE INDEX alert_subscriptions_user ON alert_subscriptions (user_id);

-- alert-fanout's ledger: one row per alert it started. `last_user_id` is the cursor of the
-- pages whose records the broker acknowledged; `completed_at` set means a replayed
-- alert-created record publishes nothing.
CREATE TABLE alert_fanouts (
    alert_id      BIGINT PRIMARY KEY REFERENCES alerts (id),
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_user_id  TEXT,
    published     BIGINT NOT NULL DEFAULT 0,
    completed_at  TIMESTAMPTZ
);

-- One status per (alert, user), created once by user-alert-delivery. `delivering` while a
-- channel is pending; `delivered` when at least one channel took it; `stored` when the user has
-- no live channel (read later through the API).
CREATE TABLE user_alert_statuses (
    alert_id    BIGINT NOT NULL REFERENCES alerts (id),
    user_id     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('delivering', 'delivered', 'stored')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    read_at     TIMESTAMPTZ,
    PRIMARY KEY (alert_id, user_id)
);
CREATE INDEX user_alert_statuses_user ON user_alert_statuses (user_id, alert_id);

-- Mobile push: a user's SNS platform endpoints (FCM or APNs).
CREATE TABLE push_endpoints (
    endpoint_arn  TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    platform      TEXT NOT NULL CHECK (platform IN ('FCM', 'APNS')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX push_endpoints_user ON push_endpoints (user_id);

-- Web: a user's live API Gateway WebSocket connections, kept by alert-connections.
CREATE TABLE ws_connections (
    connection_id  TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    connected_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ws_connections_user ON ws_connections (user_id);

-- One delivery per (alert, user, channel, target), written with the status. A sender claims
-- pending rows (`claimed_at`) before sending, so two invocations never send the same one; a
-- claim older than 30 s is taken over. `gone`: the endpoint or connection no longer exists and
-- was removed; never retried.
CREATE TABLE user_alert_deliveries (
    alert_id      BIGINT NOT NULL,
    user_id       TEXT NOT NULL,
    channel       TEXT NOT NULL CHECK (channel IN ('push', 'web')),
    target        TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'gone')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    claimed_at    TIMESTAMPTZ,
    settled_at    TIMESTAMPTZ,
    PRIMARY KEY (alert_id, user_id, channel, target),
    FOREIGN KEY (alert_id, user_id) REFERENCES user_alert_statuses (alert_id, user_id)
);
CREATE INDEX user_alert_deliveries_pending ON user_alert_deliveries (alert_id, user_id)
    WHERE state = 'pending';

-- The outbox publishes to Kafka as well as SNS (the producer's outbox decides where): a Kafka
-- record is keyed by `message_key`; SNS messages leave it NULL.
ALTER TABLE outbox ADD COLUMN message_key TEXT;
