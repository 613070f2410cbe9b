//! The local broker: topics, dead-letter producers, MSK events, reading a topic back.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;

use crate::{env_or, local_s3, repo_root, stack_resource, unique};

pub fn kafka_brokers() -> String {
    env_or("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// A dead-letter producer for `consumer` on the local broker, with its ledger in `db` and the
/// local stack's dead-letter bucket for oversized records.
pub fn dead_letters(
    db: &sqlx::PgPool,
    consumer: &str,
) -> anyhow::Result<adapters::kafka::DeadLetters> {
    adapters::kafka::DeadLetters::new(
        &kafka_brokers(),
        db.clone(),
        local_s3(),
        stack_resource("DeadLetterBucket")?,
        consumer,
    )
}

/// Creates topics on the local broker (it does not create them on first use).
pub async fn create_topics(names: &[&str]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, 1, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("create topic {topic}: {code}"))?;
    }
    Ok(())
}

/// A record read back from a topic: key, payload and headers.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads a topic from the beginning until `expected` records arrived or `wait` passed.
pub async fn read_topic(
    topic: &str,
    expected: usize,
    wait: Duration,
) -> anyhow::Result<Vec<Consumed>> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::message::Headers as _;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("reader-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < expected {
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let message = message?;
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        let value = header
                            .value
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        (header.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(out)
}

/// Reads a sample MSK event from `events/`, renaming its topic (record keys included).
pub fn load_kafka_event(
    file: &str,
    topic: &str,
    renamed: &str,
) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
    let path = repo_root().join("events").join(file);
    let raw = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(serde_json::from_str(
        &raw.replace(&format!("\"{topic}"), &format!("\"{renamed}")),
    )?)
}

/// An MSK event carrying `values` on partition 0 of `topic`, from `first_offset` on, each
/// stamped `timestamp_ms`.
pub fn kafka_event(
    topic: &str,
    first_offset: i64,
    timestamp_ms: i64,
    values: &[String],
) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
    kafka_event_on(&[(topic, 0, first_offset, values)], timestamp_ms)
}

/// An MSK event carrying, for each (topic, partition, first offset, values), the values on that
/// partition from the offset on, each stamped `timestamp_ms`.
pub fn kafka_event_on(
    partitions: &[(&str, i32, i64, &[String])],
    timestamp_ms: i64,
) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
    use base64::Engine as _;
    let mut records = serde_json::Map::new();
    for (topic, partition, first_offset, values) in partitions {
        let batch: Vec<_> = values
            .iter()
            .zip(*first_offset..)
            .map(|(value, offset)| {
                serde_json::json!({
                    "topic": topic, "partition": partition, "offset": offset,
                    "timestamp": timestamp_ms, "timestampType": "CREATE_TIME", "headers": [],
                    "value": base64::engine::general_purpose::STANDARD.encode(value),
                })
            })
            .collect();
        records.insert(format!("{topic}-{partition}"), batch.into());
    }
    Ok(serde_json::from_value(serde_json::json!({
        "eventSource": "aws:kafka",
        "records": records,
    }))?)
}
