//! Kafka records delivered by an MSK event source mapping: decoding in one place, the one batch
//! processor every Kafka function uses, and the dead-letter producer.
//!
//! A batch is validated record by record. Valid records are applied together, set-based, by
//! the function. Invalid records go to `<topic>-dlq` with headers naming the original topic,
//! partition, offset and the reason, and are recorded in `kafka_dead_letters` so a replayed
//! batch does not dead-letter them twice. A transient failure (database or broker unreachable)
//! fails the invocation: the event source retries the batch, and applying it again is a no-op.
//!
//! [`process_retrying`] is the variant for consumers that must not stall a partition: a
//! transient failure is retried inside the invocation with the given backoff, as long as the
//! invocation's remaining time allows, and then the batch's records go to the dead-letter topic
//! with the number of attempts and the last error, to be replayed with `devtools redrive`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use domain::WorkerError;
use domain::text::storable;
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::config::{KafkaAuth, KafkaConfig};
use crate::emf::{Metrics, Unit};
use crate::msk_iam::KafkaContext;

mod dead_letters;
pub use dead_letters::{
    CLAIM_CHECK_HEADER, CLAIM_TIMEOUT, ClaimCheck, ClaimedRecord, DeadLetters, MESSAGE_BUDGET,
    Sending,
};

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A record that cannot be used, with the reason.
pub type Rejected = Box<(Record, WorkerError)>;

/// Every record of the event in (topic, partition, offset) order; records whose encoding is
/// broken come back as permanent errors carrying what could be read.
pub fn decode(event: &KafkaEvent) -> Vec<Result<Record, Rejected>> {
    let mut out: Vec<_> = event
        .records
        .values()
        .flatten()
        .map(|raw| {
            let partition = i32::try_from(raw.partition).unwrap_or(i32::MAX);
            let headers = raw
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(name, bytes)| (name.clone(), bytes.iter().map(|b| *b as u8).collect()))
                .collect();
            let key = raw.key.as_deref().map(|k| BASE64.decode(k));
            let value = raw.value.as_deref().map(|v| BASE64.decode(v));
            let mut record = Record {
                topic: raw.topic.clone().unwrap_or_default(),
                partition,
                offset: raw.offset,
                timestamp_ms: raw.timestamp.0.timestamp_millis(),
                key: None,
                value: Vec::new(),
                headers,
            };
            match (key.transpose(), value) {
                (Ok(key), Some(Ok(value))) => {
                    record.key = key;
                    record.value = value;
                    Ok(record)
                }
                (_, None) => {
                    let reason = WorkerError::permanent("record has no value");
                    Err(Box::new((record, reason)))
                }
                (Err(err), _) | (_, Some(Err(err))) => {
                    record.value = raw.value.clone().unwrap_or_default().into_bytes();
                    let reason = WorkerError::permanent(format_args!("invalid base64: {err}"));
                    Err(Box::new((record, reason)))
                }
            }
        })
        .collect();
    // Sort by reference: this runs over every record of large batches.
    fn position(r: &Result<Record, Rejected>) -> (&str, i32, i64) {
        let r = match r {
            Ok(r) => r,
            Err(rejected) => &rejected.0,
        };
        (r.topic.as_str(), r.partition, r.offset)
    }
    out.sort_unstable_by(|a, b| position(a).cmp(&position(b)));
    out
}

/// The client settings and context `config` asks for: plaintext to the local broker, or
/// SASL/OAUTHBEARER over TLS to MSK's IAM listener with tokens from `sdk`'s credentials. Call
/// inside the Tokio runtime.
pub fn client_config(
    config: &KafkaConfig,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<(ClientConfig, KafkaContext)> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    match config.auth {
        KafkaAuth::Plaintext => Ok((client, KafkaContext::default())),
        KafkaAuth::MskIam => {
            client
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "OAUTHBEARER")
                .set("ssl.ca.location", "probe");
            Ok((client, KafkaContext::msk_iam(sdk)?))
        }
    }
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

/// Validates every record, applies the valid ones in one call, dead-letters the rest.
pub async fn process<T, V, A, Fut>(
    event: &KafkaEvent,
    validate: V,
    apply: A,
    dead_letters: &DeadLetters,
) -> Result<KafkaBatchSummary, WorkerError>
where
    V: Fn(&Record) -> Result<T, WorkerError>,
    A: FnOnce(Vec<T>) -> Fut,
    Fut: Future<Output = Result<usize, WorkerError>>,
{
    let started = Instant::now();
    let triage = Triage::of(event, validate);
    let mut summary = triage.summary();
    // Apply before dead-lettering: if applying fails the batch is retried anyway, and the
    // rejections are sent once, with the attempt that succeeds.
    summary.applied = apply(triage.valid).await?;
    dead_letters.send_all(&triage.rejected).await?;
    report(&summary, started);
    Ok(summary)
}

/// How transient failures are retried inside one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The wait before each retry; its length is the number of retries.
    pub backoff: Vec<Duration>,
    /// Time kept back from the invocation's deadline for dead-lettering: a retry whose wait
    /// would eat into it is not made.
    pub reserve: Duration,
}

impl Retry {
    /// The seed's policy (SPEC §2): three retries, after 1 s, 2 s and 3 s.
    pub fn seed() -> Self {
        Self {
            backoff: [1, 2, 3].map(Duration::from_secs).to_vec(),
            reserve: Duration::from_secs(10),
        }
    }

    /// Runs `op` until it succeeds, fails permanently, runs out of retries or would run past
    /// `deadline`; a failure comes back with the number of attempts made. A retry is made only
    /// if `reserve` is left after its wait, and must finish half the reserve before `deadline`
    /// (a retry cut short counts as a transient failure), so the caller keeps time to act.
    pub async fn run<R, F, Fut>(
        &self,
        deadline: Instant,
        what: &str,
        mut op: F,
    ) -> Result<R, (WorkerError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, WorkerError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = if attempts == 1 {
                op().await
            } else {
                let cutoff = deadline.checked_sub(self.reserve / 2).unwrap_or(deadline);
                tokio::time::timeout_at(cutoff.into(), op())
                    .await
                    .unwrap_or_else(|_| {
                        Err(WorkerError::retryable(anyhow::anyhow!(
                            "{what}: attempt {attempts} cut short by the invocation's deadline"
                        )))
                    })
            };
            let err = match result {
                Ok(done) => return Ok(done),
                Err(err) => err,
            };
            let wait = self.backoff.get(attempts as usize - 1).copied();
            let fits = wait.is_some_and(|wait| Instant::now() + wait + self.reserve <= deadline);
            match wait {
                Some(wait) if err.is_retryable() && fits => {
                    tracing::warn!(what, attempts, error = %err, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
                _ => return Err((err, attempts)),
            }
        }
    }
}

/// Like [`process`], but a failure never fails the invocation while the dead-letter topic can
/// be written: applying and dead-lettering are each retried under `retry`, and what still
/// fails is sent to `<topic>-dlq` with the attempts and the error, so the partition moves on.
/// `apply` must be idempotent: it may run again after a failure it did not see. It gets the
/// valid items shared, so each attempt borrows nothing from the last.
pub async fn process_retrying<T, V, A, Fut>(
    event: &KafkaEvent,
    validate: V,
    apply: A,
    dead_letters: &DeadLetters,
    retry: &Retry,
    deadline: Instant,
) -> Result<KafkaBatchSummary, WorkerError>
where
    V: Fn(&Record) -> Result<T, WorkerError>,
    A: Fn(Arc<[T]>) -> Fut,
    Fut: Future<Output = Result<usize, WorkerError>>,
{
    let started = Instant::now();
    let triage = Triage::of(event, validate);
    let mut summary = triage.summary();
    let mut gave_up = false;
    if !triage.valid.is_empty() {
        let valid: Arc<[T]> = triage.valid.into();
        match retry.run(deadline, "apply", || apply(valid.clone())).await {
            Ok(applied) => summary.applied = applied,
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
    // After giving up the rejections go straight out: the ledger shares the failed database,
    // and there is no time left to retry it.
    if gave_up {
        dead_letters.forward(&triage.rejected, 1).await?;
    } else {
        // What the last attempt found held by another invocation; None if the ledger never
        // answered.
        let held: Mutex<Option<Vec<(Record, String)>>> = Mutex::new(None);
        let sent = retry
            .run(deadline, "dead-letter", || async {
                let sending = dead_letters.send(&triage.rejected).await?;
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
        if let Err((err, _)) = sent {
            match held
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
            {
                // The other invocation kept its claims past this one's budget: send those
                // too rather than let the partition move on without them (they may arrive
                // twice, never zero times).
                Some(held) => {
                    tracing::warn!(error = %err, records = held.len(), "dead letters claimed elsewhere sent again");
                    dead_letters.forward(&held, 1).await?;
                }
                None => {
                    tracing::warn!(error = %err, "dead-letter ledger unavailable; sending without it");
                    dead_letters.forward(&triage.rejected, 1).await?;
                }
            }
        }
    }
    report(&summary, started);
    Ok(summary)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_decoded_in_partition_and_offset_order() {
        let event: KafkaEvent = serde_json::from_value(serde_json::json!({
            "eventSource": "aws:kafka",
            "records": {
                "t-1": [
                    {"topic": "t", "partition": 1, "offset": 9, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "value": "eyJhIjoxfQ==",
                     "headers": [{"trace": [104, 105]}]}
                ],
                "t-0": [
                    {"topic": "t", "partition": 0, "offset": 5, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "key": "azE=", "value": "!!!", "headers": []},
                    {"topic": "t", "partition": 0, "offset": 4, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "headers": []}
                ]
            }
        }))
        .expect("valid event");
        let decoded = decode(&event);
        let offsets: Vec<i64> = decoded
            .iter()
            .map(|r| match r {
                Ok(r) => r.offset,
                Err(rejected) => rejected.0.offset,
            })
            .collect();
        assert_eq!(offsets, [4, 5, 9]);
        assert!(matches!(&decoded[0], Err(r) if r.1.to_string().contains("no value")));
        assert!(matches!(&decoded[1], Err(r) if r.1.to_string().contains("invalid base64")));
        let ok = decoded[2].as_ref().expect("valid record");
        assert_eq!(ok.value, br#"{"a":1}"#);
        assert_eq!(ok.headers, [("trace".to_owned(), b"hi".to_vec())]);
    }

    fn quick(retries: usize) -> Retry {
        Retry {
            backoff: vec![Duration::from_millis(5); retries],
            reserve: Duration::from_millis(5),
        }
    }

    async fn attempts_until(retry: &Retry, deadline: Instant, fail: &[bool]) -> (bool, u32) {
        let calls = std::cell::Cell::new(0_usize);
        let result = retry
            .run(deadline, "test", || {
                let n = calls.get();
                calls.set(n + 1);
                let transient = fail.get(n).copied();
                async move {
                    match transient {
                        Some(true) => Err(WorkerError::retryable(anyhow::anyhow!("down"))),
                        Some(false) => Err(WorkerError::permanent("bad")),
                        None => Ok(()),
                    }
                }
            })
            .await;
        match result {
            Ok(()) => (true, u32::try_from(calls.get()).unwrap_or(u32::MAX)),
            Err((_, attempts)) => (false, attempts),
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_within_the_budget() {
        let far = Instant::now() + Duration::from_secs(60);
        // Two transient failures, then success: three attempts.
        assert_eq!(
            attempts_until(&quick(3), far, &[true, true]).await,
            (true, 3)
        );
        // Four transient failures exhaust three retries after four attempts.
        assert_eq!(
            attempts_until(&quick(3), far, &[true, true, true, true]).await,
            (false, 4)
        );
        // A permanent failure is not retried.
        assert_eq!(attempts_until(&quick(3), far, &[false]).await, (false, 1));
        // No time left for the wait: no retry.
        let near = Instant::now() + Duration::from_millis(8);
        assert_eq!(attempts_until(&quick(3), near, &[true]).await, (false, 1));
        assert_eq!(Retry::seed().backoff.len(), 3);
    }

    #[tokio::test]
    async fn a_retry_is_cut_short_before_the_deadline() {
        let retry = Retry {
            backoff: vec![Duration::from_millis(1)],
            reserve: Duration::from_millis(100),
        };
        let deadline = Instant::now() + Duration::from_millis(300);
        let calls = std::cell::Cell::new(0);
        let result: Result<(), _> = retry
            .run(deadline, "test", || {
                calls.set(calls.get() + 1);
                let first = calls.get() == 1;
                async move {
                    if first {
                        return Err(WorkerError::retryable(anyhow::anyhow!("down")));
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                }
            })
            .await;
        let (err, attempts) = result.expect_err("the retry cannot finish in time");
        assert_eq!(attempts, 2);
        assert!(err.to_string().contains("cut short"), "{err}");
        assert!(Instant::now() < deadline);
    }
}
