//! The one Kafka batch processor: validate every record, apply the valid ones together,
//! dead-letter the rest; what happens on a transient failure is the consumer's [`OnFailure`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use domain::WorkerError;
use domain::text::storable;
use serde::Serialize;

use super::{DeadLetters, Record, Retry, decode};
use crate::emf::{Metrics, Unit};

/// The deadline assumed outside a served invocation (tests, tools): Lambda's longest timeout.
const NO_DEADLINE: Duration = Duration::from_secs(900);

/// What a consumer does when applying a batch, or dead-lettering its rejections, fails
/// transiently (a database or broker unreachable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFailure {
    /// Fail the invocation: the event source retries the batch, which holds its partition
    /// until the outage ends. Applying a batch again must change nothing.
    FailInvocation,
    /// Retry within the invocation's deadline, then send the batch's records to the
    /// dead-letter topic with `dlq.attempts` and the last error, so the partition moves on;
    /// `devtools redrive` replays them after the fix. Only a dead-letter topic that cannot be
    /// written fails the invocation.
    RetryThenDeadLetter(Retry),
}

/// What a batch came to; also the function's response.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct KafkaBatchSummary {
    pub records: usize,
    pub valid: usize,
    pub applied: usize,
    pub rejected: usize,
    /// Valid records sent to the dead-letter topic once retries were exhausted.
    pub exhausted: usize,
}

/// A batch split by validation: valid items beside their records, and the rejected records.
struct Triage<T> {
    records: usize,
    valid: Vec<T>,
    valid_records: Vec<Record>,
    rejected: Vec<(Record, String)>,
}

impl<T> Triage<T> {
    fn of<V>(event: &KafkaEvent, validate: V) -> Self
    where
        V: Fn(&Record) -> Result<T, WorkerError>,
    {
        let decoded = decode(event);
        let mut triage = Self {
            records: decoded.len(),
            valid: Vec::with_capacity(decoded.len()),
            valid_records: Vec::with_capacity(decoded.len()),
            rejected: Vec::new(),
        };
        for result in decoded {
            let (record, err) = match result {
                Ok(record) => match validate(&record) {
                    Ok(item) => {
                        triage.valid.push(item);
                        triage.valid_records.push(record);
                        continue;
                    }
                    Err(err) => (record, err),
                },
                Err(rejected) => *rejected,
            };
            tracing::warn!(
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                error.kind = err.kind(),
                reason = %err,
                "record rejected"
            );
            // The reason is stored and sent as a header: never a NUL, never unbounded.
            triage.rejected.push((record, storable(&err.to_string())));
        }
        triage
    }

    fn summary(&self) -> KafkaBatchSummary {
        KafkaBatchSummary {
            records: self.records,
            valid: self.valid.len(),
            rejected: self.rejected.len(),
            ..KafkaBatchSummary::default()
        }
    }
}

/// Validates every record, applies the valid ones in one call, dead-letters the rest, and on a
/// transient failure does what `on_failure` says. `apply` gets the valid items shared, so a
/// retry borrows nothing from the attempt before; it must be idempotent: it may run again
/// after a failure it did not see. Apply comes first: if it fails, the rejections are sent with
/// the attempt that succeeds. The deadline is the served invocation's
/// ([`crate::telemetry::invocation_deadline`]).
pub async fn process<T, V, A, Fut>(
    event: &KafkaEvent,
    validate: V,
    apply: A,
    dead_letters: &DeadLetters,
    on_failure: &OnFailure,
) -> Result<KafkaBatchSummary, WorkerError>
where
    V: Fn(&Record) -> Result<T, WorkerError>,
    A: Fn(Arc<[T]>) -> Fut,
    Fut: Future<Output = Result<usize, WorkerError>>,
{
    let started = Instant::now();
    let deadline = crate::telemetry::invocation_deadline().unwrap_or(started + NO_DEADLINE);
    let no_retry = Retry::none();
    let retry = match on_failure {
        OnFailure::FailInvocation => &no_retry,
        OnFailure::RetryThenDeadLetter(retry) => retry,
    };
    let triage = Triage::of(event, validate);
    let mut summary = triage.summary();
    let mut gave_up = false;
    if !triage.valid.is_empty() {
        let valid: Arc<[T]> = triage.valid.into();
        match retry.run(deadline, "apply", || apply(valid.clone())).await {
            Ok(applied) => summary.applied = applied,
            Err((err, _)) if *on_failure == OnFailure::FailInvocation => return Err(err),
            Err((err, attempts)) => {
                tracing::error!(
                    records = valid.len(),
                    attempts,
                    error = %err,
                    "batch not applied; its records go to the dead-letter topic"
                );
                let reason = storable(&err.to_string());
                let failed: Vec<(Record, String)> = triage
                    .valid_records
                    .into_iter()
                    .map(|record| (record, reason.clone()))
                    .collect();
                summary.exhausted = dead_letters.forward(&failed, attempts).await?;
                gave_up = true;
            }
        }
    }
    match on_failure {
        OnFailure::FailInvocation => {
            dead_letters.send_all(&triage.rejected).await?;
        }
        // After giving up the rejections go straight out: the ledger shares the failed
        // database, and there is no time left to retry it.
        OnFailure::RetryThenDeadLetter(_) if gave_up => {
            dead_letters.forward(&triage.rejected, 1).await?;
        }
        OnFailure::RetryThenDeadLetter(retry) => {
            send_retrying(dead_letters, &triage.rejected, retry, deadline).await?;
        }
    }
    report(&summary, started);
    Ok(summary)
}

/// Sends the rejections through the ledger under `retry`. If the ledger never answers they are
/// sent without it; if another invocation still holds some of them when the retries run out,
/// those are sent here too, rather than let the partition move on without them (they may
/// arrive twice, never zero times).
async fn send_retrying(
    dead_letters: &DeadLetters,
    rejected: &[(Record, String)],
    retry: &Retry,
    deadline: Instant,
) -> Result<(), WorkerError> {
    // What the last attempt found held elsewhere; None if the ledger never answered.
    let held: Mutex<Option<Vec<(Record, String)>>> = Mutex::new(None);
    let sent = retry
        .run(deadline, "dead-letter", || async {
            let sending = dead_letters.send(rejected).await?;
            let waiting = sending.held.len();
            *held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sending.held);
            match waiting {
                0 => Ok(()),
                n => Err(WorkerError::retryable(anyhow::anyhow!(
                    "{n} dead letters of this batch are being sent by another invocation"
                ))),
            }
        })
        .await;
    let Err((err, _)) = sent else {
        return Ok(());
    };
    match held
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
    {
        Some(held) => {
            tracing::warn!(error = %err, records = held.len(), "dead letters claimed elsewhere sent again");
            dead_letters.forward(&held, 1).await?;
        }
        None => {
            tracing::warn!(error = %err, "dead-letter ledger unavailable; sending without it");
            dead_letters.forward(rejected, 1).await?;
        }
    }
    Ok(())
}

/// Logs and emits the batch's figures.
fn report(summary: &KafkaBatchSummary, started: Instant) {
    let elapsed = started.elapsed();
    let mut metrics = Metrics::for_function(crate::telemetry::function_name());
    metrics
        .put("Records", summary.records as f64, Unit::Count)
        .put("Applied", summary.applied as f64, Unit::Count)
        .put("Rejected", summary.rejected as f64, Unit::Count)
        .put("Exhausted", summary.exhausted as f64, Unit::Count)
        .put(
            "BatchDuration",
            elapsed.as_secs_f64() * 1e3,
            Unit::Milliseconds,
        );
    metrics.emit();
    tracing::info!(
        records = summary.records,
        applied = summary.applied,
        rejected = summary.rejected,
        exhausted = summary.exhausted,
        elapsed_ms = elapsed.as_millis() as u64,
        "Kafka batch processed"
    );
}
