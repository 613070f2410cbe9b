//! Replays a dead-letter topic after a fix (SPEC §4, "manual recovery path from every DLQ").
//!
//! Every record of `<topic>-dlq` not yet redriven is produced back to the topic it came from
//! (its `dlq.original.topic` header, else the DLQ's name without `-dlq`), with its key, value
//! and own headers; the `dlq.*` headers are replaced by `redrive.from`, naming the dead letter.
//! Progress is the consumer group's committed offsets (`<dlq>-redrive` by default), committed
//! only once the broker acknowledged every replayed record, so a second run replays only what
//! arrived since, and a crash in between replays a record twice, which consumers that are
//! idempotent per record (every one of ours) absorb.
//!
//! The run reads each partition up to the end it had when the run started, so records that
//! fail again and come back to the DLQ during the run wait for the next run.
//!
//! A dead letter marked `dlq.claim-check: s3` carries a claim check in place of a record too
//! large for the dead-letter topic: its value (and key, when that was too long too) is read back
//! from S3, checked against the size and SHA-256 the claim check names, and produced as it was.

use std::collections::BTreeMap;
use std::time::Duration;

use adapters::config::KafkaConfig;
use adapters::kafka::{CLAIM_CHECK_HEADER, ClaimedRecord, client_config};
use adapters::msk_iam::KafkaContext;
use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Records produced before their offsets are committed.
const CHUNK: usize = 1_000;

/// What a run replayed: records per destination topic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub per_topic: BTreeMap<String, usize>,
}

impl Redriven {
    pub fn total(&self) -> usize {
        self.per_topic.values().sum()
    }
}

/// Marks the admin API's pending redrive requests for `dlq` done, `replayed` records replayed
/// by the run that served them. Returns how many it marked.
pub async fn mark_requests_done(
    db: &sqlx::PgPool,
    dlq: &str,
    replayed: i64,
) -> anyhow::Result<u64> {
    Ok(sqlx::query_file!("sql/mark_redriven.sql", dlq, replayed)
        .execute(db)
        .await?
        .rows_affected())
}

/// Replays `dlq` on the brokers `kafka` names (with IAM authentication to MSK when it says
/// so, from `sdk`'s credentials), tracking progress in consumer group `group`.
pub async fn redrive(
    kafka: &KafkaConfig,
    sdk: &aws_config::SdkConfig,
    dlq: &str,
    group: &str,
) -> anyhow::Result<Redriven> {
    let (client, context) = client_config(kafka, sdk)?;
    let consumer: StreamConsumer<KafkaContext> = client
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create_with_context(context.clone())
        .context("create the DLQ consumer")?;
    let producer: FutureProducer<KafkaContext> = client
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000")
        // A record redriven from a claim check may be as large as its topic allowed: the
        // broker's limit decides, not the client's default of 1,000,000 bytes.
        .set("message.max.bytes", "16777216")
        .create_with_context(context)
        .context("create the producer")?;

    // Where each partition starts (the group's committed offset, else the earliest record) and
    // where the run stops (the end when it started).
    let metadata = consumer
        .fetch_metadata(Some(dlq), TIMEOUT)
        .with_context(|| format!("read the metadata of {dlq}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == dlq)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {dlq} does not exist");
    }
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(dlq, *partition);
    }
    let committed = consumer.committed_offsets(wanted, TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(dlq, partition, TIMEOUT)?;
        let start = match committed.find_partition(dlq, partition).map(|p| p.offset()) {
            Some(Offset::Offset(n)) => n.max(low),
            _ => low,
        };
        if start < high {
            assignment.add_partition_offset(dlq, partition, Offset::Offset(start))?;
            ends.insert(partition, high);
        }
    }
    let mut redriven = Redriven::default();
    if ends.is_empty() {
        return Ok(redriven);
    }
    consumer.assign(&assignment)?;
    let s3 = adapters::aws::s3(sdk);

    let mut dead: Vec<OwnedMessage> = Vec::new();
    while !ends.is_empty() {
        let message = tokio::time::timeout(TIMEOUT * 3, consumer.recv())
            .await
            .with_context(|| format!("{dlq}: no record within {:?}", TIMEOUT * 3))??;
        let (partition, offset) = (message.partition(), message.offset());
        let Some(&end) = ends.get(&partition) else {
            continue;
        };
        if offset + 1 >= end {
            ends.remove(&partition);
        }
        if offset < end {
            dead.push(message.detach());
        }
    }

    for chunk in dead.chunks(CHUNK) {
        // At most 16 at once: a claim check fetches its record (up to about 1 MiB) from S3.
        let targets: Vec<String> = stream::iter(chunk)
            .map(|message| replay(&producer, &s3, dlq, message))
            .buffer_unordered(16)
            .try_collect()
            .await?;
        for target in targets {
            *redriven.per_topic.entry(target).or_default() += 1;
        }
        // Every record of the chunk was acknowledged: its offsets can be committed.
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for message in chunk {
            let entry = next.entry(message.partition()).or_default();
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut done = TopicPartitionList::new();
        for (partition, offset) in next {
            done.add_partition_offset(dlq, partition, Offset::Offset(offset))?;
        }
        consumer
            .commit(&done, CommitMode::Sync)
            .with_context(|| format!("commit {group}'s offsets on {dlq}"))?;
    }
    Ok(redriven)
}

/// Produces one dead letter back to its topic; returns the topic.
async fn replay(
    producer: &FutureProducer<KafkaContext>,
    s3: &aws_sdk_s3::Client,
    dlq: &str,
    message: &OwnedMessage,
) -> anyhow::Result<String> {
    let mut target = None;
    let mut claim_check = false;
    let mut headers = OwnedHeaders::new();
    for header in message.headers().iter().flat_map(|h| h.iter()) {
        if header.key == "dlq.original.topic" {
            target = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned());
        }
        if header.key == CLAIM_CHECK_HEADER {
            claim_check = header.value == Some(b"s3".as_slice());
        }
        if !header.key.starts_with("dlq.") {
            headers = headers.insert(header);
        }
    }
    let from = format!("{dlq}:{}:{}", message.partition(), message.offset());
    headers = headers.insert(Header {
        key: "redrive.from",
        value: Some(&from),
    });
    let target = target
        .or_else(|| dlq.strip_suffix("-dlq").map(str::to_owned))
        .with_context(|| format!("{from} names no topic to return to"))?;
    let (mut key, mut payload) = (
        message.key().map(<[u8]>::to_vec),
        message.payload().map(<[u8]>::to_vec),
    );
    if claim_check {
        let claimed: ClaimedRecord = serde_json::from_slice(message.payload().unwrap_or_default())
            .with_context(|| format!("{from}: its claim check does not decode"))?;
        payload = Some(
            claimed
                .value
                .fetch(s3)
                .await
                .with_context(|| format!("{from}: value"))?,
        );
        if let Some(check) = &claimed.key {
            key = Some(
                check
                    .fetch(s3)
                    .await
                    .with_context(|| format!("{from}: key"))?,
            );
        }
    }
    let mut record = FutureRecord::to(&target).headers(headers);
    if let Some(payload) = &payload {
        record = record.payload(payload);
    }
    if let Some(key) = &key {
        record = record.key(key);
    }
    producer
        .send(record, TIMEOUT)
        .await
        .map_err(|(err, _)| anyhow::anyhow!("produce {from} to {target}: {err}"))?;
    Ok(target)
}
