-- Coupon issuance (SPEC §2, `coupon-issue-requests`): coupons with their stock, the coupons
-- users hold, and one outcome per request id that clients look up.

CREATE TABLE coupons (
    id              BIGINT PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'ended')),
    total_stock     BIGINT NOT NULL CHECK (total_stock >= 0),
    -- Taken by the consumer under the row lock; the check is the last line of defence.
    remaining_stock BIGINT NOT NULL CHECK (remaining_stock BETWEEN 0 AND total_stock),
    valid_from      TIMESTAMPTZ NOT NULL,
    valid_until     TIMESTAMPTZ NOT NULL CHECK (valid_until > valid_from),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- At most one coupon per user and coupon id, and one grant per request id.
CREATE TABLE user_coupons (
    coupon_id  BIGINT NOT NULL REFERENCES coupons (id),
    user_id    BIGINT NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    issued_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at    TIMESTAMPTZ,
    PRIMARY KEY (coupon_id, user_id)
);
CREATE INDEX user_coupons_by_user ON user_coupons (user_id);

-- The answer to every request: written once, never changed, so a replayed or repeated request
-- id reads the same outcome. The position names the record that decided it.
CREATE TABLE coupon_issue_outcomes (
    request_id   TEXT PRIMARY KEY,
    coupon_id    BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    outcome      TEXT NOT NULL
        CHECK (outcome IN ('issued', 'sold_out', 'duplicate', 'invalid', 'expired')),
    reason       TEXT,
    topic        TEXT NOT NULL,
    partition    INTEGER NOT NULL,
    "offset"     BIGINT NOT NULL,
    decided_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX coupon_issue_outcomes_by_coupon ON coupon_issue_outcomes (coupon_id, outcome);

-- Records dead-lettered after retries say how many attempts they had.
ALTER TABLE kafka_dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
