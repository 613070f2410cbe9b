-- Kafka consumers (SPEC §2): records rejected to a dead-letter topic, and performance metrics.

-- One row per record sent to `<topic>-dlq`: a replayed batch does not dead-letter twice, and
-- operators can query why a record was rejected.
CREATE TABLE kafka_dead_letters (
    consumer   TEXT NOT NULL,
    topic      TEXT NOT NULL,
    partition  INTEGER NOT NULL,
    "offset"   BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition, "offset")
);

-- Flink window results, kept as received for realtime-vs-batch comparison. The key makes a
-- duplicate window a no-op. window_date is the window's date in Asia/Seoul.
CREATE TABLE performance_metrics (
    campaign_id   BIGINT NOT NULL,
    advertiser_id BIGINT NOT NULL,
    window_size   TEXT NOT NULL CHECK (window_size IN ('1m', '5m', '1h')),
    window_start  TIMESTAMPTZ NOT NULL,
    window_date   DATE NOT NULL,
    impressions   BIGINT NOT NULL CHECK (impressions >= 0),
    clicks        BIGINT NOT NULL CHECK (clicks BETWEEN 0 AND impressions),
    conversions   BIGINT NOT NULL CHECK (conversions BETWEEN 0 AND clicks),
    cost_micros   BIGINT NOT NULL CHECK (cost_micros >= 0),
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, window_size, window_start)
);
CREATE INDEX performance_metrics_campaign_date ON performance_metrics (campaign_id, window_date);
CREATE INDEX performance_metrics_advertiser_date ON performance_metrics (advertiser_id, window_date);
