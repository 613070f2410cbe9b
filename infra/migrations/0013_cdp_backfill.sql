-- The CDP backfill (SPEC §3, issue 17): advertisers whose data goes to the CDP, one state per
-- advertiser and month, and one summary row per dataset written. Months are Asia/Seoul ones,
-- stored as their first day.

CREATE TABLE advertisers (
    advertiser_id        BIGINT PRIMARY KEY CHECK (advertiser_id > 0),
    name                 TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- NEW: backfilling its 24 months; EXISTING: only its current month.
    advertiser_type      TEXT NOT NULL DEFAULT 'NEW' CHECK (advertiser_type IN ('NEW', 'EXISTING')),
    active               BOOLEAN NOT NULL DEFAULT true,
    backfill_start_month DATE CHECK (extract(day FROM backfill_start_month) = 1),
    backfill_completed   BOOLEAN NOT NULL DEFAULT false,
    last_completed_month DATE CHECK (extract(day FROM last_completed_month) = 1),
    -- Why it was deactivated (an exhausted month, or an operator), kept until it is activated.
    deactivated_reason   TEXT CHECK (length(deactivated_reason) <= 500),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX advertisers_active ON advertisers (advertiser_id) WHERE active;

-- One month of one advertiser. claim_token is issued when the orchestrator queues the month
-- and travels in the jobs message: the worker runs the month only under the token it was
-- queued with, so a duplicate or late message does nothing.
CREATE TABLE cdp_months (
    advertiser_id     BIGINT NOT NULL REFERENCES advertisers ON DELETE CASCADE,
    month             DATE NOT NULL CHECK (extract(day FROM month) = 1),
    state             TEXT NOT NULL DEFAULT 'PENDING'
                      CHECK (state IN ('PENDING', 'QUEUED', 'RUNNING', 'COMPLETED', 'FAILED')),
    claim_token       UUID,
    queued_at         TIMESTAMPTZ,
    started_at        TIMESTAMPTZ,
    completed_at      TIMESTAMPTZ,
    processed_records BIGINT NOT NULL DEFAULT 0 CHECK (processed_records >= 0),
    failed_records    BIGINT NOT NULL DEFAULT 0 CHECK (failed_records >= 0),
    error             TEXT CHECK (length(error) <= 500),
    -- Failures after the first attempt; 4 means the month exhausted its 3 retries.
    retry_count       INTEGER NOT NULL DEFAULT 0 CHECK (retry_count BETWEEN 0 AND 4),
    next_attempt_at   TIMESTAMPTZ,
    PRIMARY KEY (advertiser_id, month),
    CHECK (state NOT IN ('QUEUED', 'RUNNING') OR claim_token IS NOT NULL)
);
-- The orchestrator reads, per advertiser, the month in flight or the oldest unfinished one;
-- the cleanup reads what is in flight.
CREATE INDEX cdp_months_unfinished ON cdp_months (advertiser_id, month) WHERE state <> 'COMPLETED';
CREATE INDEX cdp_months_in_flight ON cdp_months (state) WHERE state IN ('QUEUED', 'RUNNING');

-- What a month's run wrote: one row per dataset (performance, audience), replaced by a re-run.
-- An audience dataset of a month whose raw events are gone is `not_retained`, with no object.
CREATE TABLE cdp_exports (
    advertiser_id BIGINT NOT NULL,
    month         DATE NOT NULL,
    dataset       TEXT NOT NULL CHECK (dataset IN ('performance', 'audience')),
    status        TEXT NOT NULL CHECK (status IN ('written', 'not_retained')),
    s3_key        TEXT,
    records       BIGINT NOT NULL CHECK (records >= 0),
    bytes         BIGINT NOT NULL CHECK (bytes >= 0),
    sha256        TEXT CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    written_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (advertiser_id, month, dataset),
    FOREIGN KEY (advertiser_id, month) REFERENCES cdp_months ON DELETE CASCADE,
    CHECK ((status = 'written') = (s3_key IS NOT NULL AND sha256 IS NOT NULL))
);

-- Audience facts read one advertiser's raw events of one month.
CREATE INDEX ad_events_advertiser ON ad_events (advertiser_id, occurred_at);
