-- The admin API (functions/admin-api): what operators asked for, and what the jobs did for them.

-- Every run of a scheduled job is recorded, failed ones too, and one started from the admin API
-- names its execution.
ALTER TABLE job_runs
    ADD COLUMN execution_id UUID,
    ADD COLUMN error TEXT CHECK (length(error) <= 500);
CREATE INDEX job_runs_by_started ON job_runs (job, started_at);
CREATE INDEX job_runs_by_execution ON job_runs (execution_id) WHERE execution_id IS NOT NULL;

-- A job an operator executed: the input it was invoked with; its run (job_runs.execution_id)
-- appears once the function finished.
CREATE TABLE job_executions (
    execution_id UUID PRIMARY KEY,
    job          TEXT NOT NULL,
    input        JSONB NOT NULL,
    requested_by TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A redrive an operator asked for: the dead-letter topic to replay to where its records came
-- from (`make redrive DLQ=…` / devtools redrive), done when a redrive of that topic ran.
CREATE TABLE redrive_requests (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer     TEXT NOT NULL,
    dlq_topic    TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    redriven_at  TIMESTAMPTZ,
    redriven     BIGINT CHECK (redriven >= 0)
);
CREATE INDEX redrive_requests_pending ON redrive_requests (dlq_topic) WHERE redriven_at IS NULL;

-- Who resolved a rollup review by hand, and why.
ALTER TABLE rollup_reviews
    ADD COLUMN resolved_by TEXT,
    ADD COLUMN resolved_at TIMESTAMPTZ,
    ADD COLUMN resolution  TEXT CHECK (length(resolution) <= 500);
CREATE INDEX rollup_reviews_open ON rollup_reviews (stat_date, campaign_id) WHERE status = 'open';

-- A mutation's idempotency key: the first request with a key is performed and its answer kept
-- for a day; the same key again gets that answer; the same key for another request is refused.
-- A row without an answer is a request in progress (or one that died: taken over after a minute).
CREATE TABLE admin_idempotency (
    subject         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint     TEXT NOT NULL,
    claimed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    status          SMALLINT,
    answer          JSONB,
    PRIMARY KEY (subject, idempotency_key)
);
CREATE INDEX admin_idempotency_claimed ON admin_idempotency (claimed_at);

-- Every mutation the admin API performed: who, what, when, the request's id and the outcome.
CREATE TABLE admin_audit (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    subject         TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status          SMALLINT NOT NULL,
    detail          JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_by_subject ON admin_audit (subject, at);
