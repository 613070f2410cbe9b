//! coupon-issue: coupon issue requests from `coupon-issue-requests` (consumer group
//! `coupon-issue-group`, SPEC §2, seed 003). The rules are `domain::coupon`; this crate reads
//! the state they need and writes what they decide, one transaction per batch:
//!
//! 1. lock the batch's coupons (`FOR NO KEY UPDATE`, in id order, so two instances whose
//!    partitions carry the same coupon take turns and cannot deadlock);
//! 2. read, after the lock, the outcomes already recorded for the batch's request ids and the
//!    grants already held for its (coupon, user) pairs: whatever another instance committed
//!    for these coupons is visible now;
//! 3. decide in memory, then write in one statement: the new outcomes (`ON CONFLICT DO
//!    NOTHING`), the grants of the outcomes actually recorded, and one conditional stock update
//!    per coupon by the grants actually inserted.
//!
//! A replayed batch finds its request ids decided and writes nothing. A transient failure is
//! retried 3 times (1 s, 2 s, 3 s) inside the invocation; after that the records go to
//! `coupon-issue-dlq` with their attempts and error, and `devtools redrive` replays them.

use std::collections::{HashMap, HashSet};

use adapters::bootstrap::KafkaConsumer;
use adapters::emf::{Metrics, Unit};
use adapters::kafka::{self, DeadLetters, KafkaBatchSummary, OnFailure, Record, Retry};
use adapters::{config, db};
use anyhow::anyhow;
use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::coupon::{Coupon, Outcome, Plan, Recorded, Submitted, decide, parse_request};
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::types::Json;

pub const CONSUMER: &str = "coupon-issue-group";
/// Where records go that are not requests or that failed every retry (seed 003).
pub const DEAD_LETTER_TOPIC: &str = "coupon-issue-dlq";

/// coupon-issue's own settings.
#[derive(Deserialize)]
struct Settings {
    dead_letter_topic: Option<String>,
}

pub struct Deps {
    pub db: PgPool,
    pub dead_letters: DeadLetters,
    /// Retry within the invocation, then dead-letter: a coupon request must not stall its
    /// partition.
    pub on_failure: OnFailure,
}

impl Deps {
    /// Dead letters go to `DEAD_LETTER_TOPIC` (default `coupon-issue-dlq`).
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let topic = settings
            .dead_letter_topic
            .unwrap_or_else(|| DEAD_LETTER_TOPIC.to_owned());
        let base = KafkaConsumer::from_env(CONSUMER).await?;
        Ok(Self {
            db: base.db,
            dead_letters: base.dead_letters.to_topic(topic),
            on_failure: OnFailure::RetryThenDeadLetter(Retry::seed()),
        })
    }
}

/// Handles one batch. A transient failure is retried within the invocation's deadline, then
/// the batch is dead-lettered: a coupon request must not stall its partition.
pub async fn handle(event: KafkaEvent, deps: &Deps) -> Result<KafkaBatchSummary, WorkerError> {
    kafka::process(
        &event,
        submitted,
        |batch| async move { issue(&deps.db, &batch).await },
        &deps.dead_letters,
        &deps.on_failure,
    )
    .await
}

/// A record as a request with its position, or why it is not one.
pub fn submitted(record: &Record) -> Result<Submitted, WorkerError> {
    Ok(Submitted {
        request: parse_request(&record.value)?,
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        received_at: record.received_at(),
    })
}

/// Decides and records a batch in one transaction; returns how many outcomes it recorded
/// (zero for a batch seen before).
pub async fn issue(db: &PgPool, batch: &[Submitted]) -> Result<usize, WorkerError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut coupon_ids: Vec<i64> = batch.iter().map(|s| s.request.coupon_id).collect();
    coupon_ids.sort_unstable();
    coupon_ids.dedup();
    let request_ids: Vec<&str> = batch
        .iter()
        .map(|s| s.request.request_id.as_str())
        .collect();
    let pair_coupons: Vec<i64> = batch.iter().map(|s| s.request.coupon_id).collect();
    let pair_users: Vec<i64> = batch.iter().map(|s| s.request.user_id).collect();

    let mut tx = db.begin().await.map_err(db::classify)?;
    let coupons: HashMap<i64, Coupon> =
        sqlx::query_file_as!(Coupon, "sql/coupons.sql", &coupon_ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(db::classify)?
            .into_iter()
            .map(|coupon| (coupon.id, coupon))
            .collect();
    let outcomes = sqlx::query_file!("sql/recorded_outcomes.sql", &request_ids as &[&str])
        .fetch_all(&mut *tx)
        .await
        .map_err(db::classify)?
        .into_iter()
        .map(|row| match Outcome::parse(&row.outcome) {
            Some(outcome) => Ok((row.request_id, outcome)),
            None => Err(WorkerError::retryable(anyhow!(
                "request {} has an unknown outcome {:?}",
                row.request_id,
                row.outcome
            ))),
        })
        .collect::<Result<HashMap<_, _>, _>>()?;
    let grants: HashSet<(i64, i64)> =
        sqlx::query_file!("sql/grants.sql", &pair_coupons, &pair_users)
            .fetch_all(&mut *tx)
            .await
            .map_err(db::classify)?
            .into_iter()
            .map(|g| (g.coupon_id, g.user_id))
            .collect();

    let plan = decide(batch, &coupons, &Recorded { outcomes, grants });
    let written = write(&mut tx, &plan).await?;
    tx.commit().await.map_err(db::classify)?;
    report(&plan, &written);
    Ok(written.recorded)
}

/// What the write statement did.
#[derive(Debug, Default)]
struct Written {
    recorded: usize,
    issued: usize,
    granted: usize,
    taken: usize,
    /// Outcomes recorded by this statement, by outcome: what the metrics count, so a replayed
    /// request (already recorded) counts nowhere but in `Replayed`.
    outcomes: HashMap<String, usize>,
}

async fn write(tx: &mut sqlx::PgConnection, plan: &Plan<'_>) -> Result<Written, WorkerError> {
    let fresh: Vec<_> = plan.fresh().collect();
    if fresh.is_empty() {
        return Ok(Written::default());
    }
    let mut columns = Columns::default();
    for decision in fresh {
        let s = decision.submitted;
        columns.request_ids.push(s.request.request_id.as_str());
        columns.coupons.push(s.request.coupon_id);
        columns.users.push(s.request.user_id);
        columns.requested.push(s.request.requested_at);
        columns.outcomes.push(decision.outcome.as_str());
        columns.reasons.push(decision.reason.as_deref());
        columns.topics.push(s.topic.as_str());
        columns.partitions.push(s.partition);
        columns.offsets.push(s.offset);
    }
    let written = sqlx::query_file!(
        "sql/write.sql",
        &columns.request_ids as &[&str],
        &columns.coupons,
        &columns.users,
        &columns.requested,
        &columns.outcomes as &[&str],
        &columns.reasons as &[Option<&str>],
        &columns.topics as &[&str],
        &columns.partitions,
        &columns.offsets,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db::classify)?;
    let count = |n: i64| usize::try_from(n).unwrap_or_default();
    let written = Written {
        recorded: count(written.recorded),
        issued: count(written.issued),
        granted: count(written.granted),
        taken: count(written.taken),
        outcomes: written
            .outcomes
            .0
            .into_iter()
            .map(|(outcome, n)| (outcome, count(n)))
            .collect(),
    };
    // Under the coupon locks these always agree; if they do not, roll back and retry rather
    // than record an issue without a grant or a grant without stock.
    if written.issued != written.granted || written.granted != written.taken {
        return Err(WorkerError::retryable(anyhow!(
            "coupon state moved under the lock: {} issued, {} granted, {} taken",
            written.issued,
            written.granted,
            written.taken
        )));
    }
    Ok(written)
}

/// The write statement's arrays, one element per fresh decision.
#[derive(Default)]
struct Columns<'a> {
    request_ids: Vec<&'a str>,
    coupons: Vec<i64>,
    users: Vec<i64>,
    requested: Vec<DateTime<Utc>>,
    outcomes: Vec<&'static str>,
    reasons: Vec<Option<&'a str>>,
    topics: Vec<&'a str>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
}

/// The batch's metrics: what this invocation recorded, by outcome, not what it was asked, so a
/// replayed request (already recorded) adds to `Replayed` only.
fn outcome_metrics(requests: usize, written: &Written) -> [(&'static str, usize); 6] {
    let count = |outcome: Outcome| {
        written
            .outcomes
            .get(outcome.as_str())
            .copied()
            .unwrap_or_default()
    };
    [
        ("Issued", count(Outcome::Issued)),
        ("SoldOut", count(Outcome::SoldOut)),
        ("Duplicate", count(Outcome::Duplicate)),
        ("Invalid", count(Outcome::Invalid)),
        ("Expired", count(Outcome::Expired)),
        ("Replayed", requests.saturating_sub(written.recorded)),
    ]
}

fn report(plan: &Plan<'_>, written: &Written) {
    let figures = outcome_metrics(plan.decisions.len(), written);
    let mut metrics = Metrics::for_function(adapters::telemetry::function_name());
    for (name, n) in figures {
        metrics.put(name, n as f64, Unit::Count);
    }
    metrics.emit();
    let [issued, sold_out, duplicate, invalid, expired, replayed] = figures.map(|(_, n)| n);
    tracing::info!(
        requests = plan.decisions.len(),
        recorded = written.recorded,
        issued,
        sold_out,
        duplicate,
        invalid,
        expired,
        replayed,
        "coupon requests decided"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_what_was_recorded_not_what_was_asked() {
        // 100 requests, 50 of them replays of requests already issued: 50 issued, not 100.
        let written = Written {
            recorded: 50,
            issued: 50,
            granted: 50,
            taken: 50,
            outcomes: HashMap::from([("issued".to_owned(), 50)]),
        };
        let figures = outcome_metrics(100, &written);
        assert_eq!(figures[0], ("Issued", 50));
        assert_eq!(figures[5], ("Replayed", 50));
        assert!(figures[1..5].iter().all(|(_, n)| *n == 0), "{figures:?}");
    }
}
