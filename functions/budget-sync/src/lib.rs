//! budget-sync: Flink's budget sync results from `budget-management` (consumer group
//! `budget-sync-processor`, SPEC §2). The DB is the source of truth for spend.
//!
//! A batch goes through these steps:
//! 1. **Corrections** (one Redis pipeline): messages already recorded (a redelivery) are left
//!    out. For each counter, the newest message's correction, if it asks for one and the
//!    difference reaches 5 %, is applied by a Lua script that adds the delta and sets a
//!    per-message marker atomically: increments made meanwhile survive, and a correction is
//!    never applied twice. If Redis is unreachable, the corrections are queued instead.
//! 2. **Record** (one statement): an accuracy row per message, keyed by its topic position,
//!    with its correction's state (`applied`, `pending` when queued, `superseded`, `none`).
//!    Older queued corrections of the same counters are superseded. A `pause_if_exceeded`
//!    message pauses its campaign when today's DB spend reached the daily budget, and queues
//!    the pause's Redis status key, and its operators' notification in the outbox, in the same
//!    transaction.
//! 3. **Queued work** (one Redis pipeline): whatever earlier batches queued is applied; if
//!    Redis is still away it stays queued. The batch succeeds either way: the DB side is done.
//! 4. **Notify**: the outbox publishes each new pause to the operators' SNS topic (at least
//!    once, keyed for de-duplication; see `adapters::outbox`).

use std::time::Duration;

use adapters::bootstrap::KafkaConsumer;
use adapters::emf::{Metrics, Unit};
use adapters::kafka::{self, DeadLetters, KafkaBatchSummary, OnFailure, Record};
use adapters::outbox::Outbox;
use adapters::{config, telemetry};
use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::budget::{self, BudgetSync, Correction, parse_sync};
use redis::aio::ConnectionManager;
use serde::Deserialize;
use sqlx::PgPool;

mod redis_side;
mod store;

use redis_side::{Due, Flushed, ScriptAnswer, apply_in_redis, flush_queued, refused};
use store::{Written, not_yet_recorded, record};

pub const CONSUMER: &str = "budget-sync-processor";

/// Pauses notified per batch.
const NOTIFY_LIMIT: i64 = 200;

/// budget-sync's own settings.
#[derive(Deserialize)]
struct Settings {
    operator_alerts_topic_arn: String,
    redis_budget_ms: Option<u64>,
}

pub struct Deps {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub dead_letters: DeadLetters,
    /// Pause notifications to the operators' topic.
    pub outbox: Outbox,
    /// The most a batch waits on Redis before leaving its work queued (`REDIS_BUDGET_MS`).
    pub redis_budget: Duration,
}

impl Deps {
    pub async fn from_env() -> anyhow::Result<Self> {
        let redis = config::RedisConfig::from_env()?;
        let settings: Settings = config::from_env()?;
        let redis_budget = Duration::from_millis(settings.redis_budget_ms.unwrap_or(10_000));
        let base = KafkaConsumer::from_env(CONSUMER).await?;
        Ok(Self {
            outbox: base.outbox(&settings.operator_alerts_topic_arn),
            redis: adapters::redis::connect_lazy(&redis)?,
            db: base.db,
            dead_letters: base.dead_letters,
            redis_budget,
        })
    }
}

/// A valid message and where it came from.
#[derive(Debug, Clone)]
pub struct Synced {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub produced_at: DateTime<Utc>,
    pub sync: BudgetSync,
}

fn validate(record: &Record) -> Result<Synced, WorkerError> {
    let produced_at = DateTime::from_timestamp_millis(record.timestamp_ms)
        .ok_or_else(|| WorkerError::out_of_range("record timestamp is out of range"))?;
    Ok(Synced {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        produced_at,
        sync: parse_sync(&record.value, produced_at)?,
    })
}

pub async fn handle(event: KafkaEvent, deps: &Deps) -> Result<KafkaBatchSummary, WorkerError> {
    kafka::process(
        &event,
        validate,
        |syncs| async move {
            let fresh = not_yet_recorded(&deps.db, &syncs).await?;
            let mut plan = plan(&fresh);
            let due: Vec<Due<'_>> = fresh
                .iter()
                .zip(&plan)
                .filter(|(_, state)| **state == Correction::Pending)
                .filter_map(|(s, _)| Due::of(s))
                .collect();
            let corrected_now = match apply_in_redis(deps, &due, &[]).await {
                Ok(outcomes) => {
                    let states = plan
                        .iter_mut()
                        .filter(|state| **state == Correction::Pending);
                    for (state, outcome) in states.zip(&outcomes) {
                        *state = outcome.state();
                    }
                    refused(&due, &outcomes);
                    outcomes
                }
                Err(err) => {
                    tracing::warn!(
                        error = %err,
                        queued = due.len(),
                        "Redis unreachable: corrections stay queued for a later batch"
                    );
                    Vec::new()
                }
            };
            let recorded = record(deps, &fresh, &plan).await?;
            let flushed = flush_queued(deps).await?;
            let notified = deps.outbox.flush(NOTIFY_LIMIT).await?;
            report(&fresh, &recorded, &corrected_now, &flushed, notified);
            Ok(recorded.rows)
        },
        &deps.dead_letters,
        &OnFailure::FailInvocation,
    )
    .await
}

/// Which corrections of the batch are due ([`budget::plan`]).
fn plan(fresh: &[Synced]) -> Vec<Correction> {
    budget::plan(fresh.iter().map(|s| (&s.sync, s.produced_at, s.offset)))
}

/// `BudgetSyncAccuracy` is the mean accuracy of the batch's new messages, in percent; the
/// template alarms below 95.
fn report(
    fresh: &[Synced],
    recorded: &Written,
    corrected_now: &[ScriptAnswer],
    flushed: &Flushed,
    notified: usize,
) {
    let mut metrics = Metrics::for_function(telemetry::function_name());
    if !fresh.is_empty() {
        let mean = fresh.iter().map(|s| s.sync.accuracy()).sum::<f64>() / fresh.len() as f64;
        metrics.put("BudgetSyncAccuracy", mean * 100.0, Unit::Percent);
    }
    let count = |wanted: ScriptAnswer| corrected_now.iter().filter(|o| **o == wanted).count();
    let corrected = count(ScriptAnswer::Applied) + flushed.corrected;
    let refused = count(ScriptAnswer::Refused) + flushed.refused;
    metrics
        .put("CorrectionsApplied", corrected as f64, Unit::Count)
        .put("CorrectionsRefused", refused as f64, Unit::Count)
        .put("RedisWorkQueued", flushed.queued as f64, Unit::Count)
        .put("CampaignsPaused", recorded.paused as f64, Unit::Count)
        .put("PausesNotified", notified as f64, Unit::Count);
    metrics.emit();
    tracing::info!(
        recorded = recorded.rows,
        paused = recorded.paused,
        corrected,
        refused,
        statuses = flushed.statuses,
        queued = flushed.queued,
        notified,
        "budget sync applied"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(timestamp_ms: i64, value: &str) -> Record {
        Record {
            topic: "budget-management".to_owned(),
            partition: 2,
            offset: 40,
            timestamp_ms,
            key: None,
            value: value.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    const SYNC: &str = r#"{"campaign_id": "101", "redis_spent": 20000, "db_spent": 10000, "accuracy_ratio": 0.5, "sync_action": "adjust_redis", "campaign_action": "none"}"#;

    #[test]
    fn a_message_is_placed_and_dated_by_its_record() {
        let synced = validate(&record(1_795_187_400_000, SYNC)).expect("a valid sync");
        assert_eq!((synced.partition, synced.offset), (2, 40));
        assert_eq!(synced.produced_at.timestamp_millis(), 1_795_187_400_000);
        assert_eq!(synced.sync.campaign_id, 101);
        let err = validate(&record(i64::MAX, SYNC)).expect_err("no such time");
        assert!(!err.is_retryable(), "{err}");
    }
}
