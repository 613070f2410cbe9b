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

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use domain::WorkerError;
use domain::text::storable;
use futures::future::{join_all, try_join_all};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sqlx::PgPool;

use crate::config::{KafkaAuth, KafkaConfig};
use crate::db::classify;
use crate::emf::{Metrics, Unit};
use crate::msk_iam::KafkaContext;

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

/// Dead letters as the ledger's columns, one row per record even if a broken event lists a
/// record twice (an `INSERT ... ON CONFLICT DO UPDATE` may not touch a row twice).
struct Rows<'a> {
    topics: Vec<&'a str>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    reasons: Vec<&'a str>,
}

impl<'a> Rows<'a> {
    fn of(items: impl Iterator<Item = &'a (Record, String)>) -> Self {
        let mut rows = Self {
            topics: Vec::new(),
            partitions: Vec::new(),
            offsets: Vec::new(),
            reasons: Vec::new(),
        };
        let mut seen = HashSet::new();
        for (record, reason) in items {
            if seen.insert((record.topic.as_str(), record.partition, record.offset)) {
                rows.topics.push(record.topic.as_str());
                rows.partitions.push(record.partition);
                rows.offsets.push(record.offset);
                rows.reasons.push(reason.as_str());
            }
        }
        rows
    }
}

/// How long a claimed dead letter may stay unsent before another invocation takes it over:
/// well past the producer's 10 s delivery timeout.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(120);

/// Produces rejected records to `<topic>-dlq` (or the topic [`DeadLetters::to_topic`] names),
/// at most once per record and consumer.
pub struct DeadLetters {
    producer: FutureProducer<KafkaContext>,
    db: PgPool,
    consumer: String,
    topic: Option<String>,
}

impl DeadLetters {
    /// A plaintext producer, as the local broker takes. `consumer` names the consuming
    /// function (its consumer group), which owns its rejections.
    pub fn new(brokers: &str, db: PgPool, consumer: impl Into<String>) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", brokers);
        producer_settings(&mut client);
        Self::create(client, KafkaContext::default(), db, consumer)
    }

    /// The producer `config` asks for: plaintext, or IAM authentication to MSK with the
    /// function's own credentials. Call inside the Tokio runtime.
    pub fn connect(
        config: &KafkaConfig,
        sdk: &aws_config::SdkConfig,
        db: PgPool,
        consumer: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let (mut client, context) = client_config(config, sdk)?;
        producer_settings(&mut client);
        Self::create(client, context, db, consumer)
    }

    fn create(
        client: ClientConfig,
        context: KafkaContext,
        db: PgPool,
        consumer: impl Into<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            producer: client.create_with_context(context)?,
            db,
            consumer: consumer.into(),
            topic: None,
        })
    }

    /// Sends every dead letter to `topic` instead of `<topic>-dlq`.
    pub fn to_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sends every rejection not already sent, each once. Claim first, produce, then mark sent:
    /// a rejection claimed by a live invocation (the same batch delivered twice at once) is not
    /// produced again here, and the call fails as retryable so the batch is confirmed only once
    /// that claim is sent; a claim older than [`CLAIM_TIMEOUT`] without a send (its invocation
    /// died) is taken over. A crash between the produce and the mark sends a record twice
    /// (same headers, so a consumer can de-duplicate), never zero times.
    pub async fn send(&self, rejected: &[(Record, String)]) -> Result<usize, WorkerError> {
        if rejected.is_empty() {
            return Ok(0);
        }
        let rows = Rows::of(rejected.iter());
        let (claimed, unsent_elsewhere): (Vec<(String, i32, i64)>, i64) = {
            let mut tx = self.db.begin().await.map_err(classify)?;
            let claimed: Vec<(String, i32, i64)> = sqlx::query_as(
                "INSERT INTO kafka_dead_letters AS d (consumer, topic, partition, \"offset\", reason)
                 SELECT $1, r.* FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS r
                 ON CONFLICT (consumer, topic, partition, \"offset\") DO UPDATE
                    SET claimed_at = now(), reason = EXCLUDED.reason
                  WHERE d.sent_at IS NULL AND d.claimed_at < now() - make_interval(secs => $6)
                 RETURNING topic, partition, \"offset\"",
            )
            .bind(&self.consumer)
            .bind(&rows.topics)
            .bind(&rows.partitions)
            .bind(&rows.offsets)
            .bind(&rows.reasons)
            .bind(CLAIM_TIMEOUT.as_secs_f64())
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
            let unsent: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM kafka_dead_letters d
                   JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, off)
                     ON d.topic = r.topic AND d.partition = r.partition AND d.\"offset\" = r.off
                  WHERE d.consumer = $1 AND d.sent_at IS NULL",
            )
            .bind(&self.consumer)
            .bind(&rows.topics)
            .bind(&rows.partitions)
            .bind(&rows.offsets)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            let claimed_len = i64::try_from(claimed.len()).unwrap_or(i64::MAX);
            (claimed, unsent - claimed_len)
        };
        let mut claimed: HashSet<(String, i32, i64)> = claimed.into_iter().collect();
        // Each claimed record once, even if the event lists it twice.
        let mine: Vec<&(Record, String)> = rejected
            .iter()
            .filter(|(r, _)| claimed.remove(&(r.topic.clone(), r.partition, r.offset)))
            .collect();
        let results = join_all(
            mine.iter()
                .map(|(record, reason)| self.produce(record, reason, 1)),
        )
        .await;
        let (sent, failed): (Vec<_>, Vec<_>) =
            mine.iter().zip(results).partition(|(_, r)| r.is_ok());
        self.mark(sent.iter().map(|(item, _)| **item), true).await?;
        if let Some((_, Err(err))) = failed.into_iter().next() {
            // Give the unsent claims back at once, so the retry sends them.
            let unsent = mine
                .iter()
                .copied()
                .filter(|item| !sent.iter().any(|(done, _)| std::ptr::eq(**done, *item)));
            self.mark(unsent, false).await?;
            return Err(err);
        }
        if unsent_elsewhere > 0 {
            return Err(WorkerError::retryable(anyhow::anyhow!(
                "{unsent_elsewhere} dead letters of this batch are being sent by another invocation"
            )));
        }
        Ok(sent.len())
    }

    /// Marks claimed dead letters sent, or gives the claims back (`sent` false).
    async fn mark<'a>(
        &self,
        items: impl Iterator<Item = &'a (Record, String)>,
        sent: bool,
    ) -> Result<(), WorkerError> {
        let rows = Rows::of(items);
        if rows.topics.is_empty() {
            return Ok(());
        }
        let statement = if sent {
            "UPDATE kafka_dead_letters d SET sent_at = now()
               FROM unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, off)
              WHERE d.consumer = $1 AND d.topic = r.topic AND d.partition = r.partition
                AND d.\"offset\" = r.off"
        } else {
            "DELETE FROM kafka_dead_letters d
              USING unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, off)
              WHERE d.consumer = $1 AND d.topic = r.topic AND d.partition = r.partition
                AND d.\"offset\" = r.off AND d.sent_at IS NULL"
        };
        sqlx::query(statement)
            .bind(&self.consumer)
            .bind(&rows.topics)
            .bind(&rows.partitions)
            .bind(&rows.offsets)
            .execute(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Sends records whose processing failed `attempts` times, without asking the ledger first:
    /// the database may be what failed. A record sent twice this way carries the same headers,
    /// and replaying it is harmless to an idempotent consumer. The ledger is written if it can
    /// be; if not, a warning says so and the records are sent all the same.
    pub async fn forward(
        &self,
        failed: &[(Record, String)],
        attempts: u32,
    ) -> Result<usize, WorkerError> {
        if failed.is_empty() {
            return Ok(0);
        }
        self.produce_all(failed.iter(), attempts).await?;
        if let Err(err) = self.record(failed.iter(), attempts).await {
            tracing::warn!(error = %err, records = failed.len(), "dead letters sent but not recorded");
        }
        Ok(failed.len())
    }

    /// Produces every record at once; fails if any could not be delivered.
    async fn produce_all(
        &self,
        records: impl Iterator<Item = &(Record, String)>,
        attempts: u32,
    ) -> Result<(), WorkerError> {
        try_join_all(records.map(|(record, reason)| self.produce(record, reason, attempts)))
            .await
            .map(|_| ())
    }

    async fn record(
        &self,
        sent: impl Iterator<Item = &(Record, String)>,
        attempts: u32,
    ) -> Result<(), WorkerError> {
        let rows = Rows::of(sent);
        sqlx::query(
            "INSERT INTO kafka_dead_letters AS d
                    (consumer, topic, partition, \"offset\", reason, attempts, sent_at)
             SELECT $1, r.*, $6, now()
               FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS r
             ON CONFLICT (consumer, topic, partition, \"offset\") DO UPDATE
                SET sent_at = coalesce(d.sent_at, now())",
        )
        .bind(&self.consumer)
        .bind(&rows.topics)
        .bind(&rows.partitions)
        .bind(&rows.offsets)
        .bind(&rows.reasons)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .execute(&self.db)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn produce(
        &self,
        record: &Record,
        reason: &str,
        attempts: u32,
    ) -> Result<(), WorkerError> {
        let dlq = match &self.topic {
            Some(topic) => topic.clone(),
            None => format!("{}-dlq", record.topic),
        };
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let attempts = attempts.to_string();
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        for (name, value) in [
            ("dlq.original.topic", record.topic.as_str()),
            ("dlq.original.partition", &partition),
            ("dlq.original.offset", &offset),
            ("dlq.consumer", &self.consumer),
            ("dlq.attempts", &attempts),
            ("dlq.error", reason),
        ] {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut message = FutureRecord::to(&dlq)
            .payload(&record.value)
            .headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        self.producer
            .send(message, Duration::from_secs(10))
            .await
            .map_err(|(err, _)| {
                WorkerError::retryable(anyhow::Error::new(err).context(format!("produce to {dlq}")))
            })?;
        Ok(())
    }
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

fn producer_settings(client: &mut ClientConfig) {
    client
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .set("socket.timeout.ms", "5000");
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
    dead_letters.send(&triage.rejected).await?;
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
    let mut ledger_down = gave_up;
    if !gave_up {
        let sent = retry.run(deadline, "dead-letter", || {
            dead_letters.send(&triage.rejected)
        });
        if let Err((err, _)) = sent.await {
            tracing::warn!(error = %err, "dead-letter ledger unavailable; sending without it");
            ledger_down = true;
        }
    }
    if ledger_down {
        dead_letters.forward(&triage.rejected, 1).await?;
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
