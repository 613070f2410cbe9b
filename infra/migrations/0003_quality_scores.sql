-- Quality scores (SPEC §2): the current score per campaign and one history row per write.

CREATE TABLE quality_scores (
    campaign_id   BIGINT PRIMARY KEY,
    advertiser_id BIGINT NOT NULL,
    score         DOUBLE PRECISION NOT NULL CHECK (score BETWEEN 0 AND 10),
    -- computed_at of the update that set the score: older or equal updates are ignored.
    computed_at   TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX quality_scores_by_advertiser ON quality_scores (advertiser_id);

-- A sharp drop is notified after the commit; notified_at is the outbox flag, so a crash
-- between commit and notification is caught up by the next batch for the campaign.
CREATE TABLE quality_score_history (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id    BIGINT NOT NULL,
    advertiser_id  BIGINT NOT NULL,
    previous_score DOUBLE PRECISION,
    score          DOUBLE PRECISION NOT NULL,
    computed_at    TIMESTAMPTZ NOT NULL,
    sharp_drop     BOOLEAN NOT NULL,
    notified_at    TIMESTAMPTZ,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, computed_at)
);
CREATE INDEX quality_score_history_unnotified ON quality_score_history (campaign_id)
    WHERE sharp_drop AND notified_at IS NULL;
