//! Lambda's MSK event source mapping, locally. Each MSK event of the template consumes its
//! topics from the local broker with the seed's consumer settings, hands the records to the
//! function as `KafkaEvent` batches, and commits the batch's offsets only once the invocation
//! succeeded.
//!
//! A failed batch goes through the mapping's error handling as the template configures it
//! (provisioned mode): records older than `MaximumRecordAgeInSeconds` are discarded unsent; with
//! `BisectBatchOnFunctionError` a failed batch is split in two and each half retried, down to
//! the record at fault; after `MaximumRetryAttempts` retries the batch is discarded. A discarded
//! batch's record (Lambda's invocation record with `KafkaBatchInfo`) goes to the `OnFailure`
//! destination, and its offsets are committed. Without a limit, a failed batch is retried with
//! backoff and never skipped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::invoke::Invoker;
use crate::report::{Delivery, Tally};
use crate::template::MskSource;

/// How often a source that has no partitions yet says it is still waiting for them.
const ASSIGNMENT_NOTICE: Duration = Duration::from_secs(30);

/// The ARN the local events carry, as MSK's would.
pub const LOCAL_CLUSTER_ARN: &str = "arn:aws:kafka:ap-northeast-2:000000000000:cluster/local/00000000-0000-0000-0000-000000000000-1";

/// Consumes `source` from `brokers` until no record arrived for `idle` (or forever when
/// `idle` is `None`).
pub async fn run(
    source: &MskSource,
    brokers: &str,
    invoker: &Invoker,
    sqs: &aws_sdk_sqs::Client,
    idle: Option<Duration>,
) -> anyhow::Result<Tally> {
    // The seed's consumer settings (SPEC §2). fetch.wait.max.ms bounds how long the broker
    // holds a fetch that has not reached fetch.min.bytes, so a quiet topic still flows.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &source.group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "30000")
        .set("fetch.min.bytes", "524288")
        .set("fetch.wait.max.ms", "200")
        // A batch is delivered (retried, bisected) without polling the consumer: an hour
        // before the group counts this member gone, as Lambda's pollers do not leave either.
        .set("max.poll.interval.ms", "3600000")
        .set(
            "auto.offset.reset",
            if source.from_start {
                "earliest"
            } else {
                "latest"
            },
        )
        .create()
        .context("create the consumer")?;
    let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    eprintln!(
        "kafka-source: {} <- {} (group {}, batch {}, window {:?})",
        source.function,
        topics.join(","),
        source.group,
        source.batch_size,
        source.window
    );

    let mut tally = Tally::default();
    let mut batch: Vec<OwnedMessage> = Vec::new();
    let mut batch_deadline: Option<Instant> = None;
    let mut assigned = false;
    let mut waiting_since = Instant::now();
    let mut last_record = Instant::now();
    loop {
        let wait = match (batch_deadline, idle) {
            (Some(deadline), _) => deadline.saturating_duration_since(Instant::now()),
            (None, Some(idle)) => idle
                .saturating_sub(last_record.elapsed())
                .min(Duration::from_secs(1)),
            (None, None) => Duration::from_secs(3600),
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => {
                assigned = true;
                last_record = Instant::now();
                batch.push(message.detach());
                batch_deadline.get_or_insert_with(|| Instant::now() + source.window);
                if batch.len() < source.batch_size {
                    continue;
                }
            }
            Ok(Err(err)) => {
                // Never skipped in silence: librdkafka retries the fetch itself, and what it
                // reports here is said on every occurrence.
                eprintln!("kafka-source: {}: consumer error: {err}", source.function);
                continue;
            }
            Err(_elapsed) if batch.is_empty() => {
                // Quiet only counts once the group gave this consumer its partitions. After a
                // run that was killed, the group waits for the old member's session to expire
                // (session.timeout.ms) before it assigns anything: wait, and say so.
                if !assigned {
                    assigned = consumer.assignment().is_ok_and(|a| a.count() > 0);
                    if !assigned && waiting_since.elapsed() > ASSIGNMENT_NOTICE {
                        eprintln!(
                            "kafka-source: {}: still waiting for the group {} to assign partitions (a previous member's session may not have expired yet)",
                            source.function, source.group
                        );
                        waiting_since = Instant::now();
                    }
                    last_record = Instant::now();
                }
                if idle.is_some_and(|idle| last_record.elapsed() >= idle) {
                    return Ok(tally);
                }
                continue;
            }
            Err(_elapsed) => {}
        }
        deliver(source, brokers, invoker, sqs, &batch, &mut tally).await;
        if let Err(err) = commit(&consumer, &batch) {
            // Not committed: the group reads these records again, at least once.
            eprintln!("kafka-source: {}: {err:#}", source.function);
        }
        batch.clear();
        batch_deadline = None;
    }
}

/// Delivers a batch until every record is taken or discarded by the error handling; each
/// invocation is a delivery.
async fn deliver(
    source: &MskSource,
    brokers: &str,
    invoker: &Invoker,
    sqs: &aws_sdk_sqs::Client,
    batch: &[OwnedMessage],
    tally: &mut Tally,
) {
    use backon::{BackoffBuilder as _, ExponentialBuilder};
    let rules = &source.on_error;
    // Infinite retries with an on-failure destination are ten, as in Lambda.
    let max_retries = rules
        .max_retries
        .or(rules.on_failure_url.as_ref().map(|_| 10));
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .build();
    // Parts still to deliver, with the failed attempts each has had.
    let mut pending: VecDeque<(Vec<OwnedMessage>, u32)> = VecDeque::from([(batch.to_vec(), 0)]);
    while let Some((part, failures)) = pending.pop_front() {
        if let Some(max_age) = rules.max_record_age
            && part.iter().any(|m| age(m) > max_age)
        {
            // Lambda discards the expired records unsent; the rest go on.
            let (old, fresh): (Vec<_>, Vec<_>) = part.into_iter().partition(|m| age(m) > max_age);
            discard(source, brokers, sqs, &old, "RecordAgeExceeded", failures).await;
            if !fresh.is_empty() {
                pending.push_front((fresh, failures));
            }
            continue;
        }
        let event = kafka_event(&part, brokers);
        let (invocation, took) = invoker.invoke(&source.function, &event).await;
        let failed = invocation.failed();
        let delivery = Delivery {
            function: &source.function,
            source: &source.event,
            records: part.len(),
            failed: if failed { part.len() } else { 0 },
            invocation: &invocation,
            took,
        };
        delivery.print();
        tally.record(&delivery);
        if !failed {
            continue;
        }
        let failures = failures + 1;
        if rules.bisect && part.len() > 1 {
            // A split does not count against the retries.
            let mut first = part;
            let second = first.split_off(first.len() / 2);
            pending.push_front((second, failures - 1));
            pending.push_front((first, failures - 1));
        } else if max_retries.is_some_and(|max| failures > max) {
            discard(
                source,
                brokers,
                sqs,
                &part,
                "RetryAttemptsExhausted",
                failures,
            )
            .await;
        } else {
            tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(30))).await;
            pending.push_front((part, failures));
        }
    }
}

/// How long ago the record was written; a record without a timestamp is taken as new.
fn age(message: &OwnedMessage) -> Duration {
    let Some(written) = message.timestamp().to_millis() else {
        return Duration::ZERO;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Duration::from_millis(u64::try_from(now - written).unwrap_or(0))
}

/// Gives up on `part`: its record goes to the on-failure destination, if there is one. If the
/// destination cannot take it, the record is printed instead, never dropped in silence.
async fn discard(
    source: &MskSource,
    brokers: &str,
    sqs: &aws_sdk_sqs::Client,
    part: &[OwnedMessage],
    condition: &str,
    attempts: u32,
) {
    let Some(first) = part.first() else {
        return;
    };
    println!(
        "{} {}: {} records discarded ({condition}) from {}-{} offset {}",
        source.function,
        source.event,
        part.len(),
        first.topic(),
        first.partition(),
        first.offset()
    );
    let Some(url) = &source.on_error.on_failure_url else {
        return;
    };
    let record = failure_record(source, brokers, part, condition, attempts);
    let sent = sqs
        .send_message()
        .queue_url(url)
        .message_body(record.to_string())
        .send()
        .await;
    if let Err(err) = sent {
        eprintln!("kafka-source: the failure record could not be sent to {url} ({err}): {record}");
    }
}

/// Lambda's record of a discarded Kafka batch: the invocation's context and `KafkaBatchInfo`
/// (the first record's position and the batch's size), not the records themselves.
pub fn failure_record(
    source: &MskSource,
    brokers: &str,
    part: &[OwnedMessage],
    condition: &str,
    attempts: u32,
) -> Value {
    let first = &part[0];
    let payload: usize = part
        .iter()
        .map(|m| m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len))
        .sum();
    json!({
        "requestContext": {
            "requestId": format!("{}-{}-{}", first.topic(), first.partition(), first.offset()),
            "functionArn": format!("arn:aws:lambda:local:000000000000:function:{}", source.function),
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "KafkaBatchInfo": {
            "batchSize": part.len(),
            "topic": first.topic(),
            "partition": first.partition(),
            "offset": first.offset(),
            "bootstrapServers": brokers,
            "payloadSize": payload,
        },
    })
}

/// Commits the offset after the last record of each partition in the batch.
fn commit(consumer: &StreamConsumer, batch: &[OwnedMessage]) -> anyhow::Result<()> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for message in batch {
        let entry = next
            .entry((message.topic(), message.partition()))
            .or_insert(0);
        *entry = (*entry).max(message.offset() + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        offsets.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .context("commit offsets")
}

/// The batch as Lambda's MSK event: records grouped by `<topic>-<partition>`, key and value in
/// base64, header values as arrays of signed bytes.
pub fn kafka_event(batch: &[OwnedMessage], brokers: &str) -> Value {
    let mut records: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for message in batch {
        let headers: Vec<Value> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        // As AWS sends them: Java's signed bytes, so 0xff is -1.
                        let bytes: Vec<i8> = h
                            .value
                            .unwrap_or_default()
                            .iter()
                            .map(|b| i8::from_ne_bytes([*b]))
                            .collect();
                        json!({ h.key: bytes })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut record = json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": message.timestamp().to_millis().unwrap_or_default(),
            "timestampType": "CREATE_TIME",
            "headers": headers,
        });
        if let Some(key) = message.key() {
            record["key"] = Value::String(BASE64.encode(key));
        }
        if let Some(value) = message.payload() {
            record["value"] = Value::String(BASE64.encode(value));
        }
        records
            .entry(format!("{}-{}", message.topic(), message.partition()))
            .or_default()
            .push(record);
    }
    json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": LOCAL_CLUSTER_ARN,
        "bootstrapServers": brokers,
        "records": records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_group_records_by_partition_and_encode_them() -> anyhow::Result<()> {
        use rdkafka::Timestamp;
        use rdkafka::message::{Header, OwnedHeaders};
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some("hi"),
            })
            .insert(Header {
                key: "binary",
                value: Some(&[0x00_u8, 0x7f, 0x80, 0xff][..]),
            });
        let message = |partition, offset| {
            OwnedMessage::new(
                Some(br#"{"a":1}"#.to_vec()),
                Some(b"k1".to_vec()),
                "t".to_owned(),
                Timestamp::CreateTime(1_700_000_000_000),
                partition,
                offset,
                Some(headers.clone()),
            )
        };
        let event = kafka_event(&[message(0, 4), message(1, 9), message(0, 5)], "b:9092");
        assert_eq!(event["records"]["t-0"].as_array().map(Vec::len), Some(2));
        let parsed: aws_lambda_events::event::kafka::KafkaEvent = serde_json::from_value(event)?;
        let record = &parsed.records["t-1"][0];
        assert_eq!(record.offset, 9);
        assert_eq!(record.value.as_deref(), Some("eyJhIjoxfQ=="));
        assert_eq!(record.key.as_deref(), Some("azE="));
        assert_eq!(record.headers[0]["trace"], [104, 105]);
        // Bytes of 0x80 and above arrive negative, as from AWS, and deserialise.
        assert_eq!(record.headers[1]["binary"], [0, 127, -128, -1]);
        Ok(())
    }
}
