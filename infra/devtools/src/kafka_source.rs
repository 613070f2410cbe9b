//! A local stand-in for Lambda's MSK event source mapping. It reads the MSK events of every
//! function in `template.yaml`, consumes their topics from the local broker with the seed's
//! consumer settings, hands the records to the function as `KafkaEvent` batches through the
//! Lambda invoke API of `cargo lambda watch`, and commits the batch's offsets only once the
//! invocation succeeded.
//!
//! Like a mapping without an on-failure destination, a failed batch is retried (with backoff)
//! and never skipped: nothing is committed past a record the function has not taken.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};

/// How long a source waits for the group to assign it partitions before giving up.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The ARN the local events carry, as MSK's would.
pub const LOCAL_CLUSTER_ARN: &str = "arn:aws:kafka:ap-northeast-2:000000000000:cluster/local/00000000-0000-0000-0000-000000000000-1";

/// One function's MSK event, as declared in the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The binary `cargo lambda watch` runs: the last segment of the function's `CodeUri`.
    pub function: String,
    pub topics: Vec<String>,
    pub group: String,
    pub batch_size: usize,
    pub window: Duration,
    /// `TRIM_HORIZON` reads a new group's topics from the start, `LATEST` from the end.
    pub from_start: bool,
}

/// Every MSK event of every function in the template, as `make up` expanded it for the local
/// stack (`.stack/template.local.json`): the template is parsed once, by the provisioner.
pub fn sources_from_template(path: &Path) -> anyhow::Result<Vec<Source>> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("read {} (run make up)", path.display()))?;
    let template: serde_json::Value =
        serde_json::from_str(&raw).with_context(|| format!("parse {}", path.display()))?;
    let mut sources = Vec::new();
    let resources = template["Resources"]
        .as_object()
        .context("template has no Resources")?;
    for (logical, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let props = &resource["Properties"];
        let Some(events) = props["Events"].as_object() else {
            continue;
        };
        for event in events.values() {
            if event["Type"].as_str() != Some("MSK") {
                continue;
            }
            let p = &event["Properties"];
            let function = props["CodeUri"]
                .as_str()
                .and_then(|uri| uri.trim_end_matches('/').rsplit('/').next())
                .with_context(|| format!("{logical:?} has no CodeUri"))?;
            let topics = p["Topics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            sources.push(Source {
                function: function.to_owned(),
                topics,
                group: p["ConsumerGroupId"]
                    .as_str()
                    .with_context(|| format!("{logical:?}: MSK event without ConsumerGroupId"))?
                    .to_owned(),
                // Lambda's defaults for MSK: 100 records, no batching window.
                batch_size: p["BatchSize"].as_u64().unwrap_or(100) as usize,
                window: Duration::from_secs(
                    p["MaximumBatchingWindowInSeconds"].as_u64().unwrap_or(0),
                ),
                from_start: p["StartingPosition"].as_str() == Some("TRIM_HORIZON"),
            });
        }
    }
    Ok(sources)
}

/// What a source did before it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub batches: usize,
    pub records: usize,
    pub failed_invocations: usize,
}

/// Where to find the broker and the function.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub brokers: String,
    /// `cargo lambda watch`'s address, e.g. `http://127.0.0.1:9000`.
    pub invoke_base: String,
}

/// Consumes `source` until no record arrived for `idle` (or forever when `idle` is `None`).
pub async fn run(
    source: &Source,
    endpoints: &Endpoints,
    idle: Option<Duration>,
) -> anyhow::Result<Stats> {
    // The seed's consumer settings (SPEC §2). fetch.wait.max.ms bounds how long the broker
    // holds a fetch that has not reached fetch.min.bytes, so a quiet topic still flows.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &endpoints.brokers)
        .set("group.id", &source.group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "30000")
        .set("fetch.min.bytes", "524288")
        .set("fetch.wait.max.ms", "200")
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
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()?;
    let url = format!(
        "{}/2015-03-31/functions/{}/invocations",
        endpoints.invoke_base.trim_end_matches('/'),
        source.function
    );
    eprintln!(
        "kafka-source: {} <- {} (group {}, batch {}, window {:?})",
        source.function,
        topics.join(","),
        source.group,
        source.batch_size,
        source.window
    );

    let mut stats = Stats::default();
    let mut batch: Vec<OwnedMessage> = Vec::new();
    let mut batch_deadline: Option<Instant> = None;
    let started = Instant::now();
    let mut assigned = false;
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
                eprintln!("kafka-source: {}: consumer error: {err}", source.function);
                continue;
            }
            Err(_elapsed) if batch.is_empty() => {
                // Quiet only counts once the group gave this consumer its partitions: joining
                // can take a while on a busy machine.
                if !assigned {
                    assigned = consumer.assignment().is_ok_and(|a| a.count() > 0);
                    if !assigned && started.elapsed() > ASSIGNMENT_TIMEOUT {
                        bail!(
                            "{}: no partitions assigned within {ASSIGNMENT_TIMEOUT:?}",
                            source.function
                        );
                    }
                    last_record = Instant::now();
                }
                if idle.is_some_and(|idle| last_record.elapsed() >= idle) {
                    return Ok(stats);
                }
                continue;
            }
            Err(_elapsed) => {}
        }
        let event = kafka_event(&batch, &endpoints.brokers);
        stats.failed_invocations += invoke_until_success(&http, &url, &event).await;
        commit(&consumer, &batch)?;
        stats.batches += 1;
        stats.records += batch.len();
        eprintln!(
            "kafka-source: {}: {} records invoked and committed",
            source.function,
            batch.len()
        );
        batch.clear();
        batch_deadline = None;
    }
}

/// Invokes until the function succeeds, as the event source mapping does; returns how many
/// attempts failed. Backoff doubles from 1 s to 30 s (`backon`).
async fn invoke_until_success(http: &reqwest::Client, url: &str, event: &Value) -> usize {
    use backon::{ExponentialBuilder, Retryable as _};
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times();
    let mut failures = 0;
    let invoked = (|| invoke(http, url, event))
        .retry(backoff)
        .notify(|err, wait| {
            failures += 1;
            eprintln!("kafka-source: invocation failed ({err:#}); retrying the batch in {wait:?}");
        })
        .await;
    // Retried without a limit, so only a success ends the loop; said all the same if not.
    if let Err(err) = invoked {
        eprintln!("kafka-source: gave up on the batch ({err:#})");
    }
    failures
}

async fn invoke(http: &reqwest::Client, url: &str, event: &Value) -> anyhow::Result<()> {
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(event.to_string())
        .send()
        .await?;
    let status = response.status();
    let function_error = response.headers().contains_key("x-amz-function-error");
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() || function_error || is_error_body(&body) {
        bail!("{status}: {body}");
    }
    Ok(())
}

/// A function error comes back as `{"errorType": ..., "errorMessage": ...}`.
fn is_error_body(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| v.get("errorType").is_some())
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
/// base64, header values as byte arrays.
pub fn kafka_event(batch: &[OwnedMessage], brokers: &str) -> Value {
    let mut records: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for message in batch {
        let headers: Vec<Value> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| json!({ h.key: h.value.unwrap_or_default() }))
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
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some("hi"),
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
        Ok(())
    }
}
