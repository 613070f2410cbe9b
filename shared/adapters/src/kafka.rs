//! Kafka records delivered by an MSK event source mapping, and the one batch processor every
//! Kafka function uses.
//!
//! - [`decode`]: the event's records, decoded once, in (topic, partition, offset) order.
//! - [`process`]: validates record by record, applies the valid records together (set-based,
//!   by the function), and sends the invalid ones to the dead-letter topic; a transient failure
//!   is handled as the consumer's [`OnFailure`] says: fail the invocation (the event source
//!   retries the batch), or retry within the invocation's deadline ([`Retry`]) and then
//!   dead-letter the batch so the partition moves on.
//! - [`DeadLetters`]: the dead-letter producer, its ledger (`kafka_dead_letters`: each
//!   rejection claimed, sent once, recorded with its reason) and claim checks in S3 for records
//!   too large for the topic.

use rdkafka::ClientConfig;

use crate::config::{KafkaAuth, KafkaConfig};
use crate::msk_iam::KafkaContext;

mod dead_letters;
mod decode;
mod process;
mod produce;
mod retry;

pub use dead_letters::{
    CLAIM_CHECK_HEADER, CLAIM_TIMEOUT, ClaimCheck, ClaimedRecord, DeadLetters, MESSAGE_BUDGET,
    Sending,
};
pub use decode::{Record, Rejected, decode};
pub use process::{KafkaBatchSummary, OnFailure, process};
pub use produce::{Outgoing, Producer, Unsent};
pub use retry::Retry;

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
