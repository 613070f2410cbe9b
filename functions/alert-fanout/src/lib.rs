//! alert-fanout: `alert-created-topic` (consumer group `alert-fanout`, SPEC §2, seed 004). For
//! each alert, one `{alertId, userId}` record per recipient to `user-alert-topic`, keyed by
//! user id (one user's alerts stay in order).
//!
//! Recipients are read in pages of [`PAGE`] users by a cursor over user ids; a page is produced
//! and every record acknowledged (`acks=all`, idempotent producer) before the ledger
//! (`alert_fanouts`) moves the cursor past it, and the alert is marked complete after the last
//! page. So a replayed record publishes nothing, a duplicate delivered at the same time waits
//! for the first (an advisory lock per alert) and then publishes nothing, and a crash
//! mid-fan-out resumes after the last acknowledged page: at most one page is published twice,
//! which user-alert-delivery absorbs (one status per alert and user).
//!
//! A record that is not an alert-created event, or names an alert that does not exist, goes to
//! the dead-letter topic with its reason; an outage is retried within the invocation, then the
//! batch is dead-lettered for `devtools redrive`.

use std::time::Instant;

use adapters::bootstrap::KafkaConsumer;
use adapters::kafka::{
    self, DeadLetters, KafkaBatchSummary, OnFailure, Outgoing, Producer, Record, Retry, Unsent,
};
use adapters::{config, db};
use aws_lambda_events::event::kafka::KafkaEvent;
use domain::WorkerError;
use domain::alert::{self, AlertCreated, UserAlert};
use serde::Deserialize;
use sqlx::PgPool;

pub const CONSUMER: &str = "alert-fanout";
pub const DEAD_LETTER_TOPIC: &str = "alert-created-topic-dlq";
/// Recipients produced, and acknowledged, per ledger step.
pub const PAGE: i64 = 10_000;

/// alert-fanout's own settings.
#[derive(Deserialize)]
struct Settings {
    dead_letter_topic: Option<String>,
    user_alert_topic: Option<String>,
}

pub struct Deps {
    pub db: PgPool,
    pub producer: Producer,
    /// Where the per-user records go (`user-alert-topic`).
    pub topic: String,
    pub dead_letters: DeadLetters,
    pub on_failure: OnFailure,
}

impl Deps {
    /// `DEAD_LETTER_TOPIC` (default `alert-created-topic-dlq`), `USER_ALERT_TOPIC` (default
    /// `user-alert-topic`), and the Kafka consumer's base.
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let base = KafkaConsumer::from_env(CONSUMER).await?;
        Ok(Self {
            producer: base.producer()?,
            db: base.db,
            topic: settings
                .user_alert_topic
                .unwrap_or_else(|| alert::USER_ALERT_TOPIC.to_owned()),
            dead_letters: base.dead_letters.to_topic(
                settings
                    .dead_letter_topic
                    .unwrap_or_else(|| DEAD_LETTER_TOPIC.to_owned()),
            ),
            on_failure: OnFailure::RetryThenDeadLetter(Retry::seed()),
        })
    }
}

/// A valid record: the event and the record itself, dead-lettered if its alert is unknown.
pub struct Created {
    pub event: AlertCreated,
    pub record: Record,
}

/// Handles one batch; answers how many alerts were fanned out.
pub async fn handle(event: KafkaEvent, deps: &Deps) -> Result<KafkaBatchSummary, WorkerError> {
    kafka::process(
        &event,
        |record| {
            Ok(Created {
                event: alert::parse_alert_created(&record.value)?,
                record: record.clone(),
            })
        },
        |batch| async move {
            let mut done = 0;
            let mut unknown = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for created in batch.iter() {
                if !seen.insert(created.event.alert_id) {
                    continue;
                }
                match fan_out(deps, created.event.alert_id).await? {
                    Some(_) => done += 1,
                    None => unknown.push((
                        created.record.clone(),
                        format!("alert {} does not exist", created.event.alert_id),
                    )),
                }
            }
            if !unknown.is_empty() {
                tracing::warn!(
                    alerts = unknown.len(),
                    error.kind = "inconsistent",
                    "records name unknown alerts"
                );
                deps.dead_letters.send_all(&unknown).await?;
            }
            Ok(done)
        },
        &deps.dead_letters,
        &deps.on_failure,
    )
    .await
}

/// Fans alert `alert_id` out; answers how many records this call published (zero when it was
/// complete already), or `None` when there is no such alert.
pub async fn fan_out(deps: &Deps, alert_id: i64) -> Result<Option<u64>, WorkerError> {
    let started = Instant::now();
    // The lock's transaction holds one connection while the ledger uses another: the function
    // runs with DB_MAX_CONNECTIONS of 2 or more (the template sets 3).
    let mut lock = deps.db.begin().await.map_err(db::classify)?;
    sqlx::query_file!("sql/lock_timeout.sql")
        .fetch_one(&mut *lock)
        .await
        .map_err(db::classify)?;
    sqlx::query_file!("sql/lock_alert.sql", alert_id)
        .execute(&mut *lock)
        .await
        .map_err(db::classify)?;
    let Some(state) = sqlx::query_file!("sql/fanout_state.sql", alert_id)
        .fetch_optional(&deps.db)
        .await
        .map_err(db::classify)?
    else {
        return Ok(None);
    };
    if state.completed {
        tracing::info!(alert_id, "alert fanned out already; nothing published");
        return Ok(Some(0));
    }
    sqlx::query_file!("sql/start_fanout.sql", alert_id)
        .execute(&deps.db)
        .await
        .map_err(db::classify)?;
    let mut cursor = state.last_user_id;
    let mut published = 0u64;
    loop {
        let page: Vec<String> = sqlx::query_file_scalar!(
            "sql/recipients.sql",
            state.app_name,
            state.alert_kind,
            cursor,
            PAGE
        )
        .fetch_all(&deps.db)
        .await
        .map_err(db::classify)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        produce(deps, alert_id, &page).await?;
        let count = page.len() as i64;
        sqlx::query_file!("sql/advance_fanout.sql", alert_id, last, count)
            .execute(&deps.db)
            .await
            .map_err(db::classify)?;
        published += page.len() as u64;
        cursor = Some(last);
        if count < PAGE {
            break;
        }
    }
    sqlx::query_file!("sql/complete_fanout.sql", alert_id)
        .execute(&deps.db)
        .await
        .map_err(db::classify)?;
    lock.commit().await.map_err(db::classify)?;
    tracing::info!(
        alert_id,
        recipients = published,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "alert fanned out"
    );
    Ok(Some(published))
}

/// Produces one page and waits for every acknowledgement; any record not acknowledged fails
/// the page (retryable: the ledger has not moved).
async fn produce(deps: &Deps, alert_id: i64, users: &[String]) -> Result<(), WorkerError> {
    let payloads: Vec<Vec<u8>> = users
        .iter()
        .map(|user_id| {
            serde_json::to_vec(&UserAlert {
                alert_id,
                user_id: user_id.clone(),
            })
        })
        .collect::<Result<_, _>>()
        .map_err(WorkerError::retryable)?;
    let records: Vec<Outgoing<'_>> = users
        .iter()
        .zip(&payloads)
        .map(|(user_id, payload)| Outgoing {
            key: Some(user_id.as_bytes()),
            payload,
            headers: &[],
        })
        .collect();
    let results = deps.producer.send_all(&deps.topic, &records).await;
    let failed: Vec<&Unsent> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(WorkerError::retryable(anyhow::anyhow!(
            "{} of {} records to {} not acknowledged: {first}",
            failed.len(),
            users.len(),
            deps.topic
        ))),
    }
}
