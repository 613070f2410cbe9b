//! The producer functions publish with (the outbox's Kafka sink, alert-fanout): the seed's
//! production profile, and a send that waits for every record's acknowledgement.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::client_config;
use crate::config::KafkaConfig;
use crate::msk_iam::KafkaContext;

/// How long a record may wait for the broker before its send fails (the producer retries
/// inside it; with idempotence a retry never duplicates). Well inside the outbox's 30 s claim,
/// so a round is settled before another flush may take it over.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for room when librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(2);

/// One record to produce.
pub struct Outgoing<'a> {
    /// None: no key (the producer spreads such records over the partitions).
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// Headers, by name.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Why a record was not produced.
#[derive(Debug)]
pub enum Unsent {
    /// The broker refused the record for its own sake (too large, invalid): no retry helps.
    Refused(KafkaError),
    /// The broker did not take it in time (unreachable, not enough replicas): retry later.
    Failed(KafkaError),
}

impl std::fmt::Display for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(err) => write!(f, "refused by the broker: {err}"),
            Self::Failed(err) => write!(f, "not acknowledged: {err}"),
        }
    }
}

/// An idempotent producer: `acks=all`, `enable.idempotence` (a retried batch is written once,
/// in order), lz4 batches with a 5 ms linger (seed 004's production profile, with 64 KiB
/// batches for fan-out).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<KafkaContext>,
}

impl Producer {
    /// The producer `config` asks for (plaintext or MSK IAM). Call inside the Tokio runtime.
    pub fn connect(config: &KafkaConfig, sdk: &aws_config::SdkConfig) -> anyhow::Result<Self> {
        let (mut client, context) = client_config(config, sdk)?;
        Ok(Self {
            inner: profile(&mut client).create_with_context(context)?,
        })
    }

    /// A plaintext producer to `brokers` (tests, tools).
    pub fn plaintext(brokers: &str) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", brokers);
        Ok(Self {
            inner: profile(&mut client).create_with_context(KafkaContext::default())?,
        })
    }

    /// Produces `records` to `topic` and waits for every acknowledgement; the answer holds one
    /// result per record, in order. Records are queued as fast as librdkafka takes them, so a
    /// large send is batched by the producer, not by the caller.
    pub async fn send_all(&self, topic: &str, records: &[Outgoing<'_>]) -> Vec<Result<(), Unsent>> {
        let mut pending: Vec<Result<DeliveryFuture, Unsent>> = Vec::with_capacity(records.len());
        for record in records {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(*value),
                });
            }
            let mut message = FutureRecord::to(topic)
                .payload(record.payload)
                .headers(headers);
            if let Some(key) = record.key {
                message = message.key(key);
            }
            let queued = loop {
                match self.inner.send_result(message) {
                    Ok(delivery) => break Ok(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        message = back;
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err((err, _)) => break Err(classify(err)),
                }
            };
            pending.push(queued);
        }
        let mut results = Vec::with_capacity(pending.len());
        for queued in pending {
            results.push(match queued {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((err, _))) => Err(classify(err)),
                    Err(_) => Err(Unsent::Failed(KafkaError::Canceled)),
                },
                Err(unsent) => Err(unsent),
            });
        }
        results
    }
}

fn profile(client: &mut ClientConfig) -> &mut ClientConfig {
    client
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "65536")
        .set("queue.buffering.max.messages", "500000")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .set("socket.timeout.ms", "10000")
}

fn classify(err: KafkaError) -> Unsent {
    match err.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize,
        ) => Unsent::Refused(err),
        _ => Unsent::Failed(err),
    }
}
