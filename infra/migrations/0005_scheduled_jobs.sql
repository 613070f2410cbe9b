-- Scheduled jobs (SPEC §3): raw ad events in monthly partitions, daily and monthly aggregates
-- rolled up from performance-metrics' hourly windows, rollup review items, budget settlement,
-- and a record of every job run. Months and days are Asia/Seoul ones throughout.

-- Raw ad events, one row per impression, click or conversion, with what it cost. device_id and
-- ip identify a person: retention pseudonymises them after 30 days (see README, "retention").
-- Partitioned by month of occurred_at so that dropping 90-day-old data is a partition drop.
CREATE TABLE ad_events (
    event_id      UUID NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL,
    campaign_id   BIGINT NOT NULL,
    advertiser_id BIGINT NOT NULL,
    event_type    TEXT NOT NULL CHECK (event_type IN ('impression', 'click', 'conversion')),
    cost_micros   BIGINT NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
    device_id     TEXT,
    ip            INET,
    anonymised_at TIMESTAMPTZ,
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
-- Events arrive roughly in time order, so a BRIN index finds a day inside a month for almost
-- nothing; the B-tree serves per-campaign reads.
CREATE INDEX ad_events_occurred_brin ON ad_events USING brin (occurred_at);
CREATE INDEX ad_events_campaign ON ad_events (campaign_id, occurred_at);

-- The partition of a month is ad_events_yYYYYmMM and covers the month in Asia/Seoul.
CREATE FUNCTION ad_events_partition_name(month DATE) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$ SELECT 'ad_events_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM') $$;

-- Creates the partitions of every month from `first` to `last` (inclusive) that are missing.
-- Returns how many it created. Called by daily-rollup (months ahead) and by tests.
CREATE FUNCTION ensure_ad_event_partitions(first DATE, last DATE) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    month   DATE := date_trunc('month', first)::date;
    created INTEGER := 0;
BEGIN
    WHILE month <= last LOOP
        IF to_regclass(ad_events_partition_name(month)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF ad_events FOR VALUES FROM (%L) TO (%L)',
                ad_events_partition_name(month),
                (month::timestamp AT TIME ZONE 'Asia/Seoul'),
                ((month + INTERVAL '1 month')::timestamp AT TIME ZONE 'Asia/Seoul'));
            created := created + 1;
        END IF;
        month := (month + INTERVAL '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

-- The months around the migration's own date; the jobs keep creating months ahead.
SELECT ensure_ad_event_partitions(
    (date_trunc('month', now() AT TIME ZONE 'Asia/Seoul') - INTERVAL '3 months')::date,
    (date_trunc('month', now() AT TIME ZONE 'Asia/Seoul') + INTERVAL '3 months')::date);

-- daily-rollup reads one day of hourly windows across every campaign; retention deletes the
-- oldest days.
CREATE INDEX performance_metrics_by_date ON performance_metrics (window_date, window_size);

-- One row per campaign and day, rolled up from the hourly windows.
CREATE TABLE campaign_daily_stats (
    campaign_id   BIGINT NOT NULL,
    stat_date     DATE NOT NULL,
    advertiser_id BIGINT NOT NULL,
    impressions   BIGINT NOT NULL,
    clicks        BIGINT NOT NULL,
    conversions   BIGINT NOT NULL,
    cost_micros   BIGINT NOT NULL,
    hours         INTEGER NOT NULL,
    rolled_up_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, stat_date)
);
CREATE INDEX campaign_daily_stats_advertiser ON campaign_daily_stats (advertiser_id, stat_date);
CREATE INDEX campaign_daily_stats_date ON campaign_daily_stats (stat_date);

-- One row per campaign and month (month = its first day), rolled up from the daily rows.
CREATE TABLE campaign_monthly_stats (
    campaign_id   BIGINT NOT NULL,
    month         DATE NOT NULL CHECK (extract(day FROM month) = 1),
    advertiser_id BIGINT NOT NULL,
    impressions   BIGINT NOT NULL,
    clicks        BIGINT NOT NULL,
    conversions   BIGINT NOT NULL,
    cost_micros   BIGINT NOT NULL,
    days          INTEGER NOT NULL,
    rolled_up_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, month)
);
CREATE INDEX campaign_monthly_stats_advertiser ON campaign_monthly_stats (advertiser_id, month);

-- A campaign whose rolled-up day differs from its raw events by 5 % or more, for a person to
-- look at. One per campaign and day: re-running the day updates it. notified_at is the
-- operators' notification outbox, so a re-run or a retry never notifies twice.
CREATE TABLE rollup_reviews (
    stat_date         DATE NOT NULL,
    campaign_id       BIGINT NOT NULL,
    advertiser_id     BIGINT NOT NULL,
    metric            TEXT NOT NULL,
    rolled_up         BIGINT NOT NULL,
    raw               BIGINT NOT NULL,
    difference_ratio  DOUBLE PRECISION NOT NULL,
    status            TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    opened_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    notified_at       TIMESTAMPTZ,
    PRIMARY KEY (stat_date, campaign_id)
);
CREATE INDEX rollup_reviews_unnotified ON rollup_reviews (stat_date) WHERE notified_at IS NULL;

-- Budget settlement: one row per campaign and day comparing the Redis day counter with the DB
-- deductions (the day's ad event costs), and one per advertiser and day summing them.
CREATE TABLE budget_settlement_items (
    settle_date    DATE NOT NULL,
    campaign_id    BIGINT NOT NULL,
    advertiser_id  BIGINT,
    redis_spent    BIGINT,
    db_spent       BIGINT,
    difference     BIGINT NOT NULL,
    classification TEXT NOT NULL CHECK (classification IN
        ('match', 'redis_over', 'db_over', 'missing_in_redis', 'missing_in_db')),
    PRIMARY KEY (settle_date, campaign_id)
);
CREATE INDEX budget_settlement_items_advertiser ON budget_settlement_items (advertiser_id, settle_date);

CREATE TABLE budget_settlements (
    advertiser_id    BIGINT NOT NULL,
    settle_date      DATE NOT NULL,
    campaigns        INTEGER NOT NULL,
    db_spent         BIGINT NOT NULL,
    redis_spent      BIGINT NOT NULL,
    difference       BIGINT NOT NULL,
    matched          INTEGER NOT NULL,
    redis_over       INTEGER NOT NULL,
    db_over          INTEGER NOT NULL,
    missing_in_redis INTEGER NOT NULL,
    missing_in_db    INTEGER NOT NULL,
    settled_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (advertiser_id, settle_date)
);
CREATE INDEX budget_settlements_date ON budget_settlements (settle_date);

-- How far retention has pseudonymised raw events: each run starts where the last one ended,
-- so it reads one day of events, not sixty.
CREATE TABLE retention_progress (
    name TEXT PRIMARY KEY,
    upto TIMESTAMPTZ NOT NULL
);

-- Every run of a scheduled job, with what it did (its summary), for operators and the admin API.
CREATE TABLE job_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         TEXT NOT NULL,
    target_date DATE NOT NULL,
    dry_run     BOOLEAN NOT NULL DEFAULT false,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    summary     JSONB NOT NULL
);
CREATE INDEX job_runs_by_job ON job_runs (job, target_date);
