-- One transactional outbox for every notification (adapters::outbox): a message is written in
-- the transaction of the change it announces and published to SNS after the commit. A flush
-- claims rows (claimed_at) and commits before publishing, then marks each published row
-- (sent_at); a claim older than 30 s without a send is taken over. At least once: readers
-- de-duplicate by the dedup_key message attribute. (producer, dedup_key) is unique, so an event
-- recorded twice is one message.
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    producer    TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        JSONB NOT NULL,
    -- SNS message attributes: {"name": {"type": "String" | "Number", "value": "..."}}
    attributes  JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_at  TIMESTAMPTZ,
    sent_at     TIMESTAMPTZ,
    -- SNS refused the message for its own sake (a sender fault): set aside with the reason, so
    -- it cannot hold up the messages after it.
    failed_at   TIMESTAMPTZ,
    failure     TEXT,
    UNIQUE (producer, dedup_key)
);
CREATE INDEX outbox_unsent ON outbox (producer, id) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Notifications still waiting in the per-table flags move to the outbox, and the flags are
-- set: a function of the previous release, still running during the deploy or back after a
-- rollback, must not announce them again. From here on the functions set the flag when they
-- hand a notification to the outbox, in the same transaction.
INSERT INTO outbox (producer, dedup_key, subject, body)
SELECT 'budget-sync-processor',
       format('campaign-paused:%s:%s', campaign_id,
              to_char(paused_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
       'Campaign paused: daily budget reached',
       jsonb_build_object('type', 'campaign_paused', 'reason', 'daily budget reached',
                          'campaign_id', campaign_id, 'advertiser_id', advertiser_id,
                          'spend_date', spend_date, 'db_spent', db_spent,
                          'daily_budget', daily_budget)
  FROM campaign_pauses WHERE notified_at IS NULL ORDER BY id;

INSERT INTO outbox (producer, dedup_key, subject, body, attributes)
SELECT 'quality-score-processor',
       format('quality-score-drop:%s:%s', campaign_id,
              to_char(computed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
       'Quality score dropped',
       jsonb_build_object('type', 'quality_score_drop', 'campaign_id', campaign_id,
                          'advertiser_id', advertiser_id, 'previous_score', previous_score,
                          'score', score, 'computed_at', computed_at),
       jsonb_build_object('advertiser_id',
                          jsonb_build_object('type', 'Number', 'value', advertiser_id::text))
  FROM quality_score_history WHERE sharp_drop AND notified_at IS NULL ORDER BY id;

UPDATE campaign_pauses SET notified_at = now() WHERE notified_at IS NULL;
UPDATE quality_score_history SET notified_at = now() WHERE sharp_drop AND notified_at IS NULL;
