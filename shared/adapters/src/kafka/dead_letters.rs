//! The dead-letter producer: rejected records to `<topic>-dlq`, each once per consumer, with a
//! ledger (`kafka_dead_letters`) of what was claimed and sent.
//!
//! A dead letter always fits its topic. The original headers are copied up to
//! [`COPIED_HEADERS_BUDGET`] (never one named `dlq.*`: those are ours), the reason is
//! [`storable`](domain::text::storable), and a record whose key and value would not fit in
//! [`MESSAGE_BUDGET`] is written to S3 first: the dead letter then carries a claim check
//! ([`ClaimedRecord`], header `dlq.claim-check: s3`) in place of its value, and `devtools redrive`
//! follows it back to the original bytes.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use domain::WorkerError;
use futures::future::{join_all, try_join_all};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::{Record, client_config};
use crate::config::DeadLetterConfig;
use crate::db::classify;
use crate::msk_iam::KafkaContext;

/// The most a dead letter's key, value and headers come to: under the producer's
/// `message.max.bytes` (1,000,000) and MSK's default `max.message.bytes` (1 MiB), with room
/// for the batch framing.
pub const MESSAGE_BUDGET: usize = 900_000;
/// Original headers copied onto a dead letter, in bytes (names, values and each header's
/// framing, counted as [`HEADER_FRAMING`]), and in number; the rest are dropped and counted in
/// `dlq.headers.dropped`.
pub const COPIED_HEADERS_BUDGET: usize = 64 * 1024;
pub const COPIED_HEADERS_MAX: usize = 256;
/// What Kafka's record format spends on one header besides its name and value (two varint
/// lengths), rounded up: empty headers are not free.
const HEADER_FRAMING: usize = 8;
/// A key longer than this goes to S3 with the value.
pub const KEY_BUDGET: usize = 16 * 1024;
/// How long a claimed dead letter may stay unsent before another invocation takes it over:
/// past the slowest send (two S3 writes of up to 10 s each and a 10 s produce), well inside
/// the event source's retries.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(45);
/// How long an S3 write of an oversized dead letter may take.
const S3_TIMEOUT: Duration = Duration::from_secs(10);
/// The header that marks a claim check.
pub const CLAIM_CHECK_HEADER: &str = "dlq.claim-check";

/// Where a part of a record too large for the dead-letter topic was put, and how to know it
/// came back whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCheck {
    pub bucket: String,
    /// The object's key.
    pub object: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the object's bytes.
    pub sha256: String,
}

/// A claim check's value on the dead-letter topic: the record's value, and its key when that
/// was too long to keep as the dead letter's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedRecord {
    pub value: ClaimCheck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ClaimCheck>,
}

impl ClaimCheck {
    fn of(bucket: &str, object: String, bytes: &[u8]) -> Self {
        Self {
            bucket: bucket.to_owned(),
            object,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The object's bytes, checked against the size and digest the claim check names.
    pub async fn fetch(&self, s3: &aws_sdk_s3::Client) -> anyhow::Result<Vec<u8>> {
        let object = s3
            .get_object()
            .bucket(&self.bucket)
            .key(&self.object)
            .send()
            .await
            .map_err(|err| {
                anyhow::Error::new(err).context(format!("get s3://{}/{}", self.bucket, self.object))
            })?;
        let bytes = object.body.collect().await?.to_vec();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != self.size || sha256 != self.sha256 {
            anyhow::bail!(
                "s3://{}/{} is {} bytes with SHA-256 {sha256}, not the {} bytes with {} the claim check names",
                self.bucket,
                self.object,
                bytes.len(),
                self.size,
                self.sha256
            );
        }
        Ok(bytes)
    }
}

/// A dead letter as it is produced: what goes to S3 first, then the message.
#[derive(Debug, PartialEq, Eq)]
struct Letter<'a> {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(&'a str, Vec<u8>)>,
    /// (object key, bytes) to write to the bucket before the message is produced.
    objects: Vec<(String, &'a [u8])>,
}

/// What is known of a dead letter beside its record.
struct About<'a> {
    consumer: &'a str,
    reason: &'a str,
    attempts: u32,
    bucket: &'a str,
}

impl<'a> Letter<'a> {
    /// The dead letter of `record`: its own headers within budget, ours, and its key and value
    /// inline when they fit, else a claim check on objects under
    /// `dead-letters/<consumer>/<topic>/<partition>/<offset>/`.
    fn of(record: &'a Record, about: &About<'_>) -> Self {
        let mut headers: Vec<(&'a str, Vec<u8>)> = Vec::new();
        let mut copied = 0_usize;
        let mut dropped = 0_usize;
        for (name, value) in &record.headers {
            let size = name.len() + value.len() + HEADER_FRAMING;
            if name.starts_with("dlq.")
                || copied + size > COPIED_HEADERS_BUDGET
                || headers.len() == COPIED_HEADERS_MAX
            {
                dropped += 1;
                continue;
            }
            copied += size;
            headers.push((name.as_str(), value.clone()));
        }
        let mut ours = vec![
            ("dlq.original.topic", record.topic.clone()),
            ("dlq.original.partition", record.partition.to_string()),
            ("dlq.original.offset", record.offset.to_string()),
            ("dlq.consumer", about.consumer.to_owned()),
            ("dlq.attempts", about.attempts.to_string()),
            ("dlq.error", about.reason.to_owned()),
        ];
        if dropped > 0 {
            ours.push(("dlq.headers.dropped", dropped.to_string()));
        }
        let key_len = record.key.as_ref().map_or(0, Vec::len);
        let ours_len: usize = ours
            .iter()
            .map(|(n, v)| n.len() + v.len() + HEADER_FRAMING)
            .sum();
        let fits = key_len <= KEY_BUDGET
            && key_len + record.value.len() + copied + ours_len <= MESSAGE_BUDGET;
        let mut letter = Letter {
            key: record.key.clone(),
            value: Vec::new(),
            headers,
            objects: Vec::new(),
        };
        if fits {
            letter.value = record.value.clone();
        } else {
            let prefix = format!(
                "dead-letters/{}/{}/{}/{}",
                about.consumer, record.topic, record.partition, record.offset
            );
            let value_object = format!("{prefix}/value");
            let mut claimed = ClaimedRecord {
                value: ClaimCheck::of(about.bucket, value_object.clone(), &record.value),
                key: None,
            };
            letter.objects.push((value_object, &record.value));
            if let Some(key) = record.key.as_deref().filter(|k| k.len() > KEY_BUDGET) {
                let key_object = format!("{prefix}/key");
                claimed.key = Some(ClaimCheck::of(about.bucket, key_object.clone(), key));
                letter.objects.push((key_object, key));
                letter.key = None;
            }
            // Serialising two small structs of strings and numbers cannot fail.
            letter.value = serde_json::to_vec(&claimed).unwrap_or_default();
            ours.push((CLAIM_CHECK_HEADER, "s3".to_owned()));
        }
        letter.headers.extend(
            ours.into_iter()
                .map(|(name, value)| (name, value.into_bytes())),
        );
        letter
    }
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
            if seen.insert(position(record)) {
                rows.topics.push(record.topic.as_str());
                rows.partitions.push(record.partition);
                rows.offsets.push(record.offset);
                rows.reasons.push(reason.as_str());
            }
        }
        rows
    }
}

fn position(record: &Record) -> (&str, i32, i64) {
    (record.topic.as_str(), record.partition, record.offset)
}

/// What [`DeadLetters::send`] did.
#[derive(Debug, Default)]
pub struct Sending {
    /// Dead letters produced by this call.
    pub sent: usize,
    /// Rejections another live invocation has claimed and not yet marked sent (the same batch
    /// delivered twice at once): not produced here.
    pub held: Vec<(Record, String)>,
}

/// Produces rejected records to `<topic>-dlq` (or the topic [`DeadLetters::to_topic`] names),
/// at most once per record and consumer.
pub struct DeadLetters {
    producer: FutureProducer<KafkaContext>,
    db: PgPool,
    s3: aws_sdk_s3::Client,
    bucket: String,
    consumer: String,
    topic: Option<String>,
}

impl DeadLetters {
    /// A plaintext producer, as the local broker takes. `consumer` names the consuming
    /// function (its consumer group), which owns its rejections; oversized ones go to `bucket`.
    pub fn new(
        brokers: &str,
        db: PgPool,
        s3: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        consumer: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", brokers);
        producer_settings(&mut client);
        Ok(Self {
            producer: client.create_with_context(KafkaContext::default())?,
            db,
            s3,
            bucket: bucket.into(),
            consumer: consumer.into(),
            topic: None,
        })
    }

    /// The producer `config` asks for: plaintext, or IAM authentication to MSK with the
    /// function's own credentials. Call inside the Tokio runtime.
    pub fn connect(
        config: &DeadLetterConfig,
        sdk: &aws_config::SdkConfig,
        db: PgPool,
        consumer: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let (mut client, context) = client_config(&config.kafka, sdk)?;
        producer_settings(&mut client);
        Ok(Self {
            producer: client.create_with_context(context)?,
            db,
            s3: crate::aws::s3(sdk),
            bucket: config.bucket.clone(),
            consumer: consumer.into(),
            topic: None,
        })
    }

    /// Sends every dead letter to `topic` instead of `<topic>-dlq`.
    pub fn to_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sends every rejection not sent yet, each once: claim, produce, mark sent. A claim older
    /// than [`CLAIM_TIMEOUT`] without a send (its invocation died) is taken over; a younger
    /// one comes back in [`Sending::held`]. A crash between the produce and the mark sends a
    /// record twice (same headers, so a reader can tell), never zero times.
    pub async fn send(&self, rejected: &[(Record, String)]) -> Result<Sending, WorkerError> {
        if rejected.is_empty() {
            return Ok(Sending::default());
        }
        let (claim, mine, sent_before) = self.claim(rejected).await?;
        let mut mine: HashSet<(String, i32, i64)> = mine.into_iter().collect();
        let mut done: HashSet<(&str, i32, i64)> = HashSet::new();
        let mut claimed: Vec<&(Record, String)> = Vec::new();
        let mut held: Vec<(Record, String)> = Vec::new();
        for item in rejected {
            let at = position(&item.0);
            if !done.insert(at) {
                continue; // listed twice by a broken event
            }
            if mine.remove(&(item.0.topic.clone(), item.0.partition, item.0.offset)) {
                claimed.push(item);
            } else if !sent_before.contains(&(
                item.0.topic.clone(),
                item.0.partition,
                item.0.offset,
            )) {
                held.push(item.clone());
            }
        }
        let results = join_all(
            claimed
                .iter()
                .map(|(record, reason)| self.produce(record, reason, 1)),
        )
        .await;
        let mut sent = Vec::new();
        let mut unsent = Vec::new();
        let mut failure = None;
        for (item, result) in claimed.into_iter().zip(results) {
            match result {
                Ok(()) => sent.push(item),
                Err(err) => {
                    unsent.push(item);
                    failure.get_or_insert(err);
                }
            }
        }
        self.mark(sent.iter().copied(), claim, true).await?;
        if let Some(err) = failure {
            // Give the unsent claims back at once, so the retry sends them.
            self.mark(unsent.into_iter(), claim, false).await?;
            return Err(err);
        }
        Ok(Sending {
            sent: sent.len(),
            held,
        })
    }

    /// Like [`Self::send`], but a rejection held by another invocation fails the call as
    /// retryable: the batch is confirmed only once each of its dead letters is sent.
    pub async fn send_all(&self, rejected: &[(Record, String)]) -> Result<usize, WorkerError> {
        let sending = self.send(rejected).await?;
        if !sending.held.is_empty() {
            return Err(WorkerError::retryable(anyhow::anyhow!(
                "{} dead letters of this batch are being sent by another invocation",
                sending.held.len()
            )));
        }
        Ok(sending.sent)
    }

    /// Claims the rejections nobody has sent or is sending. Returns the claim's time (which
    /// [`Self::mark`] matches, so a claim taken over is not marked by its first owner), the
    /// records claimed, and those already sent. Counting the sent ones, not the unsent ones,
    /// keeps a claim given back in between from passing for a send.
    async fn claim(
        &self,
        rejected: &[(Record, String)],
    ) -> Result<
        (
            DateTime<Utc>,
            Vec<(String, i32, i64)>,
            HashSet<(String, i32, i64)>,
        ),
        WorkerError,
    > {
        let rows = Rows::of(rejected.iter());
        let mut tx = self.db.begin().await.map_err(classify)?;
        let claim: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let mine = sqlx::query_file!(
            "sql/dead_letters/claim.sql",
            self.consumer,
            &rows.topics as &[&str],
            &rows.partitions,
            &rows.offsets,
            &rows.reasons as &[&str],
            claim,
            CLAIM_TIMEOUT.as_secs_f64(),
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let sent = sqlx::query_file!(
            "sql/dead_letters/already_sent.sql",
            self.consumer,
            &rows.topics as &[&str],
            &rows.partitions,
            &rows.offsets,
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok((
            claim,
            mine.into_iter()
                .map(|r| (r.topic, r.partition, r.offset))
                .collect(),
            sent.into_iter()
                .map(|r| (r.topic, r.partition, r.offset))
                .collect(),
        ))
    }

    /// Marks this claim's dead letters sent, or gives the claims back (`sent` false).
    async fn mark<'a>(
        &self,
        items: impl Iterator<Item = &'a (Record, String)>,
        claim: DateTime<Utc>,
        sent: bool,
    ) -> Result<(), WorkerError> {
        let rows = Rows::of(items);
        if rows.topics.is_empty() {
            return Ok(());
        }
        // One parameter list for both files; a macro, as each file is checked at compile time.
        macro_rules! settle {
            ($file:tt) => {
                sqlx::query_file!(
                    $file,
                    self.consumer,
                    &rows.topics as &[&str],
                    &rows.partitions,
                    &rows.offsets,
                    claim,
                )
                .execute(&self.db)
                .await
            };
        }
        let marked = if sent {
            settle!("sql/dead_letters/mark_sent.sql")
        } else {
            settle!("sql/dead_letters/give_back.sql")
        }
        .map_err(classify)?
        .rows_affected();
        if sent && marked < rows.topics.len() as u64 {
            // Another invocation took these claims over while this one was producing: both
            // send, and the other marks them.
            tracing::warn!(
                claimed = rows.topics.len(),
                marked,
                "dead letters sent after their claims were taken over: they may arrive twice"
            );
        }
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
        try_join_all(
            failed
                .iter()
                .map(|(record, reason)| self.produce(record, reason, attempts)),
        )
        .await?;
        if let Err(err) = self.record(failed, attempts).await {
            tracing::warn!(error = %err, records = failed.len(), "dead letters sent but not recorded");
        }
        Ok(failed.len())
    }

    async fn record(&self, sent: &[(Record, String)], attempts: u32) -> Result<(), WorkerError> {
        let rows = Rows::of(sent.iter());
        sqlx::query_file!(
            "sql/dead_letters/record_forwarded.sql",
            self.consumer,
            &rows.topics as &[&str],
            &rows.partitions,
            &rows.offsets,
            &rows.reasons as &[&str],
            i32::try_from(attempts).unwrap_or(i32::MAX),
        )
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
        let about = About {
            consumer: &self.consumer,
            reason,
            attempts,
            bucket: &self.bucket,
        };
        let letter = Letter::of(record, &about);
        for (object, bytes) in &letter.objects {
            self.put(object, bytes).await?;
        }
        let mut headers = OwnedHeaders::new();
        for (name, value) in &letter.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut message = FutureRecord::to(&dlq)
            .payload(&letter.value)
            .headers(headers);
        if let Some(key) = &letter.key {
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

    /// Writes one part of an oversized dead letter; the same bytes to the same key on a retry.
    async fn put(&self, object: &str, bytes: &[u8]) -> Result<(), WorkerError> {
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes.to_vec()))
            .send();
        let what = format!("put s3://{}/{object}", self.bucket);
        match tokio::time::timeout(S3_TIMEOUT, put).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(WorkerError::retryable(
                anyhow::Error::new(err).context(what),
            )),
            Err(_) => Err(WorkerError::retryable(anyhow::anyhow!(
                "{what}: no answer within {S3_TIMEOUT:?}"
            ))),
        }
    }
}

fn producer_settings(client: &mut ClientConfig) {
    client
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .set("socket.timeout.ms", "5000");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<Vec<u8>>, value: Vec<u8>, headers: Vec<(&str, Vec<u8>)>) -> Record {
        Record {
            topic: "budget-management".to_owned(),
            partition: 3,
            offset: 42,
            timestamp_ms: 0,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
        }
    }

    const ABOUT: About<'static> = About {
        consumer: "budget-sync-processor",
        reason: "unknown field `x`",
        attempts: 1,
        bucket: "dead-letter-bucket",
    };

    fn header<'a>(letter: &'a Letter<'_>, name: &str) -> Option<&'a [u8]> {
        letter
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn size(letter: &Letter<'_>) -> usize {
        letter.key.as_ref().map_or(0, Vec::len)
            + letter.value.len()
            + letter
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }

    #[test]
    fn a_record_that_fits_goes_as_it_came_with_our_headers_after_its_own() {
        let r = record(
            Some(b"k".to_vec()),
            b"{}".to_vec(),
            vec![("source", b"flink".to_vec())],
        );
        let letter = Letter::of(&r, &ABOUT);
        assert_eq!(letter.value, b"{}");
        assert_eq!(letter.key.as_deref(), Some(&b"k"[..]));
        assert!(letter.objects.is_empty());
        assert_eq!(letter.headers[0], ("source", b"flink".to_vec()));
        assert_eq!(header(&letter, "dlq.original.offset"), Some(&b"42"[..]));
        assert_eq!(header(&letter, "dlq.error"), Some(ABOUT.reason.as_bytes()));
        assert_eq!(header(&letter, CLAIM_CHECK_HEADER), None);
        assert_eq!(header(&letter, "dlq.headers.dropped"), None);
    }

    #[test]
    fn a_value_too_large_for_the_topic_becomes_a_claim_check() {
        let value = vec![b'x'; 1024 * 1024];
        let r = record(Some(b"k".to_vec()), value.clone(), vec![]);
        let letter = Letter::of(&r, &ABOUT);
        assert_eq!(header(&letter, CLAIM_CHECK_HEADER), Some(&b"s3"[..]));
        assert_eq!(letter.key.as_deref(), Some(&b"k"[..]), "a short key stays");
        let claimed: ClaimedRecord = serde_json::from_slice(&letter.value).expect("claim check");
        let object = "dead-letters/budget-sync-processor/budget-management/3/42/value";
        assert_eq!(
            claimed,
            ClaimedRecord {
                value: ClaimCheck {
                    bucket: "dead-letter-bucket".to_owned(),
                    object: object.to_owned(),
                    size: 1024 * 1024,
                    sha256: hex::encode(Sha256::digest(&value)),
                },
                key: None,
            }
        );
        assert_eq!(letter.objects, [(object.to_owned(), value.as_slice())]);
        assert!(size(&letter) < 4096);
    }

    #[test]
    fn a_key_too_long_to_keep_goes_to_s3_beside_the_value() {
        let key = vec![b'k'; KEY_BUDGET + 1];
        let r = record(Some(key.clone()), b"{}".to_vec(), vec![]);
        let letter = Letter::of(&r, &ABOUT);
        assert_eq!(letter.key, None);
        let claimed: ClaimedRecord = serde_json::from_slice(&letter.value).expect("claim check");
        let key_check = claimed.key.expect("the key's claim check");
        assert_eq!(key_check.size, key.len() as u64);
        assert_eq!(letter.objects.len(), 2);
        assert_eq!(letter.objects[1].1, key.as_slice());
    }

    #[test]
    fn headers_are_bounded_and_ours_cannot_be_forged() {
        let big = vec![b'h'; COPIED_HEADERS_BUDGET / 2];
        let r = record(
            None,
            b"{}".to_vec(),
            vec![
                ("a", big.clone()),
                ("dlq.error", b"forged".to_vec()),
                ("b", big.clone()),
                ("c", b"small".to_vec()),
            ],
        );
        let letter = Letter::of(&r, &ABOUT);
        let names: Vec<&str> = letter.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(&names[..2], ["a", "c"]);
        assert_eq!(header(&letter, "dlq.headers.dropped"), Some(&b"2"[..]));
        assert_eq!(header(&letter, "dlq.error"), Some(ABOUT.reason.as_bytes()));
        assert_eq!(
            letter
                .headers
                .iter()
                .filter(|(n, _)| *n == "dlq.error")
                .count(),
            1
        );
    }

    #[test]
    fn empty_headers_are_not_free() {
        let r = record(None, b"{}".to_vec(), vec![("", Vec::new()); 300_000]);
        let letter = Letter::of(&r, &ABOUT);
        assert_eq!(
            letter.headers.iter().filter(|(n, _)| n.is_empty()).count(),
            COPIED_HEADERS_MAX
        );
        assert_eq!(
            header(&letter, "dlq.headers.dropped"),
            Some((300_000 - COPIED_HEADERS_MAX).to_string().as_bytes())
        );
    }

    #[test]
    fn every_dead_letter_fits_the_budget() {
        for (key, value, header) in [
            (0, MESSAGE_BUDGET - 100, 0),
            (KEY_BUDGET, MESSAGE_BUDGET, COPIED_HEADERS_BUDGET),
            (KEY_BUDGET * 10, 10, COPIED_HEADERS_BUDGET * 3),
            (0, 5 * 1024 * 1024, 0),
        ] {
            let r = record(
                Some(vec![0; key]),
                vec![0; value],
                vec![("h", vec![0; header])],
            );
            let letter = Letter::of(&r, &ABOUT);
            assert!(size(&letter) <= MESSAGE_BUDGET, "{key} {value} {header}");
        }
    }
}
