-- Budget sync (SPEC §2, `budget-management`): campaigns with their daily budgets and status,
-- one accuracy row per sync message, and the pauses it caused.

CREATE TABLE campaigns (
    campaign_id       BIGINT PRIMARY KEY,
    advertiser_id     BIGINT NOT NULL,
    -- Won per KST day; NULL means no daily cap.
    daily_budget      BIGINT CHECK (daily_budget >= 0),
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'ended')),
    status_reason     TEXT,
    status_changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_by_advertiser ON campaigns (advertiser_id);

-- One row per message, keyed by its position in the topic, so a redelivery adds nothing.
-- `correction` is the Redis side's state: 'applied' when Redis took the delta before the row
-- was written, 'pending' when Redis could not be reached (the correction is queued here and
-- applied by a later batch, never lost), 'superseded' when a newer message about the same
-- counter came first (it was computed from a later reading, so applying both would correct
-- twice), 'none' when no correction was asked for or due.
CREATE TABLE budget_sync_accuracy (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic            TEXT NOT NULL,
    partition        INTEGER NOT NULL,
    "offset"         BIGINT NOT NULL,
    produced_at      TIMESTAMPTZ NOT NULL,
    campaign_id      BIGINT NOT NULL,
    spend_date       DATE NOT NULL,
    redis_spent      BIGINT NOT NULL,
    db_spent         BIGINT NOT NULL,
    reported_ratio   DOUBLE PRECISION,
    accuracy         DOUBLE PRECISION NOT NULL,
    difference_ratio DOUBLE PRECISION NOT NULL,
    correction_delta BIGINT,
    correction       TEXT NOT NULL CHECK (correction IN ('none', 'pending', 'applied', 'superseded')),
    corrected_at     TIMESTAMPTZ,
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX budget_sync_accuracy_by_campaign ON budget_sync_accuracy (campaign_id, spend_date);
CREATE INDEX budget_sync_accuracy_pending ON budget_sync_accuracy (campaign_id, spend_date)
    WHERE correction = 'pending';

-- A pause, once per campaign and day. Its Redis status key and its operators' notification
-- are outboxes: each is marked when done, so a crash or an outage after the commit is caught
-- up by a later batch, exactly once.
CREATE TABLE campaign_pauses (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id       BIGINT NOT NULL REFERENCES campaigns,
    advertiser_id     BIGINT NOT NULL,
    spend_date        DATE NOT NULL,
    db_spent          BIGINT NOT NULL,
    daily_budget      BIGINT NOT NULL,
    paused_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    redis_status_at   TIMESTAMPTZ,
    notified_at       TIMESTAMPTZ,
    UNIQUE (campaign_id, spend_date)
);
CREATE INDEX campaign_pauses_outbox ON campaign_pauses (id)
    WHERE redis_status_at IS NULL OR notified_at IS NULL;
