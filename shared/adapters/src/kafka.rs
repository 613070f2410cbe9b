//! Kafka records delivered by an MSK event source mapping: decoding in one place, the one batch
//! processor every Kafka function uses, and the dead-letter producer.
//!
//! A batch is validated record by record. Valid records are applied together, set-based, by
//! the function. Invalid records go to `<topic>-dlq` with headers naming the original topic,
//! partition, offset and the reason, and are recorded in `kafka_dead_letters` so a replayed
//! batch does not dead-letter them twice. A transient failure (database or broker unreachable)
//! fails the invocation: the event source retries the batch, and applying it again is a no-op.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use domain::WorkerError;
use futures::future::try_join_all;
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

/// Produces rejected records to `<topic>-dlq`, at most once per record and consumer.
pub struct DeadLetters {
    producer: FutureProducer<KafkaContext>,
    db: PgPool,
    consumer: String,
}

impl DeadLetters {
    /// A plaintext producer, as the local broker takes. `consumer` names the consuming
    /// function (its consumer group), which owns its rejections.
    pub fn new(brokers: &str, db: PgPool, consumer: impl Into<String>) -> anyhow::Result<Self> {
        Self::create(
            producer_config(brokers),
            KafkaContext::default(),
            db,
            consumer,
        )
    }

    /// The producer `config` asks for: plaintext, or IAM authentication to MSK with the
    /// function's own credentials. Call inside the Tokio runtime.
    pub fn connect(
        config: &KafkaConfig,
        sdk: &aws_config::SdkConfig,
        db: PgPool,
        consumer: impl Into<String>,
    ) -> anyhow::Result<Self> {
        match config.auth {
            KafkaAuth::Plaintext => Self::new(&config.brokers, db, consumer),
            KafkaAuth::MskIam => {
                let mut client = producer_config(&config.brokers);
                client
                    .set("security.protocol", "SASL_SSL")
                    .set("sasl.mechanism", "OAUTHBEARER")
                    .set("ssl.ca.location", "probe");
                Self::create(client, KafkaContext::msk_iam(sdk)?, db, consumer)
            }
        }
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
        })
    }

    /// Sends every rejection not already sent. Produce first, record after: a crash in between
    /// sends a record twice (same headers, so a consumer can de-duplicate), never zero times.
    pub async fn send(&self, rejected: &[(Record, String)]) -> Result<usize, WorkerError> {
        if rejected.is_empty() {
            return Ok(0);
        }
        let topics: Vec<&str> = rejected.iter().map(|(r, _)| r.topic.as_str()).collect();
        let partitions: Vec<i32> = rejected.iter().map(|(r, _)| r.partition).collect();
        let offsets: Vec<i64> = rejected.iter().map(|(r, _)| r.offset).collect();
        let already: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT d.topic, d.partition, d.\"offset\"
               FROM kafka_dead_letters d
               JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, partition, off)
                 ON d.topic = r.topic AND d.partition = r.partition AND d.\"offset\" = r.off
              WHERE d.consumer = $1",
        )
        .bind(&self.consumer)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .fetch_all(&self.db)
        .await
        .map_err(classify)?;
        let fresh: Vec<&(Record, String)> = rejected
            .iter()
            .filter(|(r, _)| !already.contains(&(r.topic.clone(), r.partition, r.offset)))
            .collect();
        if fresh.is_empty() {
            return Ok(0);
        }

        try_join_all(
            fresh
                .iter()
                .map(|(record, reason)| self.produce(record, reason)),
        )
        .await?;

        let topics: Vec<&str> = fresh.iter().map(|(r, _)| r.topic.as_str()).collect();
        let partitions: Vec<i32> = fresh.iter().map(|(r, _)| r.partition).collect();
        let offsets: Vec<i64> = fresh.iter().map(|(r, _)| r.offset).collect();
        let reasons: Vec<&str> = fresh.iter().map(|(_, reason)| reason.as_str()).collect();
        sqlx::query(
            "INSERT INTO kafka_dead_letters (consumer, topic, partition, \"offset\", reason)
             SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.consumer)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .bind(&reasons)
        .execute(&self.db)
        .await
        .map_err(classify)?;
        Ok(fresh.len())
    }

    async fn produce(&self, record: &Record, reason: &str) -> Result<(), WorkerError> {
        let dlq = format!("{}-dlq", record.topic);
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
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

fn producer_config(brokers: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .set("socket.timeout.ms", "5000");
    client
}

/// What a batch came to; also the function's response.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct KafkaBatchSummary {
    pub records: usize,
    pub valid: usize,
    pub applied: usize,
    pub rejected: usize,
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
    let decoded = decode(event);
    let mut summary = KafkaBatchSummary {
        records: decoded.len(),
        ..Default::default()
    };
    let mut valid = Vec::with_capacity(decoded.len());
    let mut rejected = Vec::new();
    for result in decoded {
        let (record, err) = match result {
            Ok(record) => match validate(&record) {
                Ok(item) => {
                    valid.push(item);
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
        rejected.push((record, err.to_string()));
    }
    summary.valid = valid.len();
    summary.rejected = rejected.len();
    // Apply before dead-lettering: if applying fails the batch is retried anyway, and the
    // rejections are sent once, with the attempt that succeeds.
    summary.applied = apply(valid).await?;
    dead_letters.send(&rejected).await?;

    let elapsed = started.elapsed();
    let mut metrics = Metrics::for_function(crate::telemetry::function_name());
    metrics
        .put("Records", summary.records as f64, Unit::Count)
        .put("Applied", summary.applied as f64, Unit::Count)
        .put("Rejected", summary.rejected as f64, Unit::Count)
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
        elapsed_ms = elapsed.as_millis() as u64,
        "Kafka batch processed"
    );
    Ok(summary)
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
}
