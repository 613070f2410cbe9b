//! The transactional outbox every notifying function uses: a message is written to `outbox` in
//! the same transaction as the change it announces, and published after the commit to an SNS
//! topic ([`Outbox::new`]) or a Kafka topic ([`Outbox::to_kafka`], keyed by [`Notice::key`]).
//!
//! **At least once, with a key to de-duplicate by.** [`Outbox::flush`] claims unsent rows
//! (`claimed_at`) and commits before it publishes, so no transaction stays open across SNS or
//! broker calls, then publishes in batches (ten per `PublishBatch`; a round at once to Kafka,
//! waiting for every acknowledgement) and marks each one sent. A crash
//! between the publish and the mark publishes that message again once its claim is older than
//! [`CLAIM_TIMEOUT`]; every message carries its `dedup_key` as a message attribute, so a
//! consumer can drop the repeat (a Kafka record carries it as a header). An event recorded twice (a replayed batch) is one row:
//! `(producer, dedup_key)` is unique.

use std::time::Duration;

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::notice::{Attribute, Notice};
use domain::text::storable;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::db::classify;
use crate::kafka::{Outgoing, Producer, Unsent};

/// How long a claimed message may stay unsent before another flush takes it over.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(30);
/// SNS takes at most ten messages per `PublishBatch`.
const SNS_BATCH: usize = 10;
/// Messages claimed at once: five `PublishBatch` calls, far inside the claim's timeout.
const ROUND: i64 = 50;

/// What one `PublishBatch` came to.
#[derive(Default)]
struct Published {
    /// Rows SNS took.
    sent: Vec<i64>,
    /// Rows SNS refused for their own sake, with the reason.
    refused: Vec<(i64, String)>,
    /// Why the rest was not taken, if it was not.
    failure: Option<WorkerError>,
}

impl Published {
    fn failed(err: WorkerError) -> Self {
        Self {
            failure: Some(err),
            ..Self::default()
        }
    }
}

/// One producer's messages to one SNS or Kafka topic.
#[derive(Clone)]
pub struct Outbox {
    db: PgPool,
    sink: Sink,
    producer: String,
}

/// Where an outbox publishes.
#[derive(Clone)]
enum Sink {
    Sns {
        client: aws_sdk_sns::Client,
        topic_arn: String,
    },
    Kafka {
        producer: Producer,
        topic: String,
    },
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = match &self.sink {
            Sink::Sns { topic_arn, .. } => topic_arn,
            Sink::Kafka { topic, .. } => topic,
        };
        f.debug_struct("Outbox")
            .field("producer", &self.producer)
            .field("to", to)
            .finish()
    }
}

/// A claimed row (`sql/outbox/claim.sql`).
struct Claimed {
    id: i64,
    dedup_key: String,
    subject: String,
    body: Value,
    attributes: Value,
    message_key: Option<String>,
    /// The claim's time: its token.
    claimed_at: DateTime<Utc>,
}

impl Outbox {
    /// To the SNS topic `topic_arn`. `producer` names the function that owns the messages
    /// (only it publishes them).
    pub fn new(
        db: PgPool,
        sns: aws_sdk_sns::Client,
        producer: impl Into<String>,
        topic_arn: impl Into<String>,
    ) -> Self {
        Self {
            db,
            sink: Sink::Sns {
                client: sns,
                topic_arn: topic_arn.into(),
            },
            producer: producer.into(),
        }
    }

    /// To the Kafka topic `topic`, each record keyed by its notice's key.
    pub fn to_kafka(
        db: PgPool,
        kafka: Producer,
        producer: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        Self {
            db,
            sink: Sink::Kafka {
                producer: kafka,
                topic: topic.into(),
            },
            producer: producer.into(),
        }
    }

    /// Writes `messages` inside the caller's transaction; a key already there is left alone.
    /// Returns how many are new.
    pub async fn add(
        &self,
        tx: &mut PgConnection,
        messages: &[Notice],
    ) -> Result<usize, WorkerError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let keys: Vec<&str> = messages.iter().map(|m| m.dedup_key.as_str()).collect();
        let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
        let bodies: Vec<Value> = messages.iter().map(|m| m.body.clone()).collect();
        let message_keys: Vec<Option<&str>> = messages.iter().map(|m| m.key.as_deref()).collect();
        let attributes: Vec<Value> = messages
            .iter()
            .map(|m| {
                let map: serde_json::Map<String, Value> = m
                    .attributes
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.clone(),
                            serde_json::to_value(value).unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                Value::Object(map)
            })
            .collect();
        let added = sqlx::query_file!(
            "sql/outbox/add.sql",
            self.producer,
            &keys as &[&str],
            &subjects as &[&str],
            &bodies,
            &attributes,
            &message_keys as &[Option<&str>],
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(usize::try_from(added).unwrap_or(usize::MAX))
    }

    /// Publishes up to `limit` unsent messages, oldest first, [`ROUND`] at a time (each round
    /// claims, publishes and marks its rows, well inside [`CLAIM_TIMEOUT`]). Messages another
    /// flush is publishing are left to it. A message SNS refuses for its own sake is set aside
    /// (`failed_at`, `failure`, logged) rather than holding up the rest. If SNS fails otherwise,
    /// what was published stays marked, the rest is given back, and the error is retryable.
    /// Returns how many were published.
    pub async fn flush(&self, limit: i64) -> Result<usize, WorkerError> {
        let mut published_in_all = 0;
        let mut left = limit;
        while left > 0 {
            let round = left.min(ROUND);
            let claimed = self.claim(round).await?;
            // One statement, one now(): the claim's time is its token.
            let Some(claim) = claimed.first().map(|c| c.claimed_at) else {
                break;
            };
            let batch = match self.sink {
                Sink::Sns { .. } => SNS_BATCH,
                Sink::Kafka { .. } => claimed.len(),
            };
            for chunk in claimed.chunks(batch) {
                let published = self.publish(chunk).await;
                self.settle(&published.sent, claim, true).await?;
                self.set_aside(&published.refused, claim).await?;
                published_in_all += published.sent.len();
                if let Some(err) = published.failure {
                    let done: Vec<i64> = published
                        .sent
                        .iter()
                        .copied()
                        .chain(published.refused.iter().map(|(id, _)| *id))
                        .collect();
                    let unsent: Vec<i64> = claimed
                        .iter()
                        .map(|c| c.id)
                        .filter(|id| !done.contains(id))
                        .collect();
                    self.settle(&unsent, claim, false).await?;
                    return Err(err);
                }
            }
            if (claimed.len() as i64) < round {
                break;
            }
            left -= round;
        }
        Ok(published_in_all)
    }

    async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, WorkerError> {
        sqlx::query_file_as!(
            Claimed,
            "sql/outbox/claim.sql",
            self.producer,
            limit,
            CLAIM_TIMEOUT.as_secs_f64(),
        )
        .fetch_all(&self.db)
        .await
        .map_err(classify)
    }

    /// Publishes one batch.
    async fn publish(&self, rows: &[Claimed]) -> Published {
        match &self.sink {
            Sink::Sns { client, topic_arn } => publish_sns(client, topic_arn, rows).await,
            Sink::Kafka { producer, topic } => publish_kafka(producer, topic, rows).await,
        }
    }

    /// Sets aside the messages SNS refused for their own sake, with the reason.
    async fn set_aside(
        &self,
        refused: &[(i64, String)],
        claim: DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        if refused.is_empty() {
            return Ok(());
        }
        let (ids, reasons): (Vec<i64>, Vec<String>) = refused.iter().cloned().unzip();
        sqlx::query_file!("sql/outbox/set_aside.sql", &ids, &reasons, claim)
            .execute(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Marks this claim's rows sent, or gives the claims back.
    async fn settle(
        &self,
        ids: &[i64],
        claim: DateTime<Utc>,
        sent: bool,
    ) -> Result<(), WorkerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let settled = if sent {
            sqlx::query_file!("sql/outbox/mark_sent.sql", ids, claim)
                .execute(&self.db)
                .await
        } else {
            sqlx::query_file!("sql/outbox/give_back.sql", ids, claim)
                .execute(&self.db)
                .await
        };
        settled.map_err(classify)?;
        Ok(())
    }
}

/// Publishes one batch to SNS.
async fn publish_sns(client: &aws_sdk_sns::Client, topic_arn: &str, rows: &[Claimed]) -> Published {
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let mut entry = PublishBatchRequestEntry::builder()
            .id(row.id.to_string())
            .subject(&row.subject)
            .message(row.body.to_string());
        let named = row
            .attributes
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(name, v)| Some((name.clone(), serde_json::from_value(v.clone()).ok()?)))
            .chain([(
                "dedup_key".to_owned(),
                Attribute::String(row.dedup_key.clone()),
            )]);
        for (name, attribute) in named {
            match sns_attribute(&attribute) {
                Ok(value) => entry = entry.message_attributes(name, value),
                Err(err) => return Published::failed(WorkerError::retryable(err)),
            }
        }
        match entry.build() {
            Ok(entry) => entries.push(entry),
            Err(err) => return Published::failed(WorkerError::retryable(err)),
        }
    }
    let answer = client
        .publish_batch()
        .topic_arn(topic_arn)
        .set_publish_batch_request_entries(Some(entries))
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(err) => {
            return Published::failed(WorkerError::retryable(
                anyhow::Error::new(err).context("SNS publish"),
            ));
        }
    };
    let id = |text: Option<&str>| text.and_then(|t| t.parse::<i64>().ok());
    let mut published = Published {
        sent: answer
            .successful()
            .iter()
            .filter_map(|s| id(s.id()))
            .collect(),
        ..Published::default()
    };
    for failed in answer.failed() {
        let reason = storable(&format!(
            "{} {}",
            failed.code(),
            failed.message().unwrap_or_default()
        ));
        match id(Some(failed.id())) {
            Some(row) if failed.sender_fault() => {
                tracing::error!(row, %reason, "SNS refused a notification; set aside");
                published.refused.push((row, reason));
            }
            _ => {
                published
                    .failure
                    .get_or_insert(WorkerError::retryable(anyhow::anyhow!(
                        "SNS could not take a message: {reason}"
                    )));
            }
        }
    }
    published
}
/// Publishes one round to Kafka and waits for every acknowledgement; the dedup key rides as a
/// header.
async fn publish_kafka(producer: &Producer, topic: &str, rows: &[Claimed]) -> Published {
    let payloads: Vec<String> = rows.iter().map(|row| row.body.to_string()).collect();
    let headers: Vec<[(&str, &[u8]); 1]> = rows
        .iter()
        .map(|row| [("dedup_key", row.dedup_key.as_bytes())])
        .collect();
    let records: Vec<Outgoing<'_>> = rows
        .iter()
        .zip(&payloads)
        .zip(&headers)
        .map(|((row, payload), headers)| Outgoing {
            key: row.message_key.as_deref().map(str::as_bytes),
            payload: payload.as_bytes(),
            headers,
        })
        .collect();
    let mut published = Published::default();
    for (row, result) in rows.iter().zip(producer.send_all(topic, &records).await) {
        match result {
            Ok(()) => published.sent.push(row.id),
            Err(Unsent::Refused(err)) => {
                let reason = storable(&err.to_string());
                tracing::error!(row = row.id, %reason, "the broker refused an outbox record; set aside");
                published.refused.push((row.id, reason));
            }
            Err(unsent @ Unsent::Failed(_)) => {
                published
                    .failure
                    .get_or_insert(WorkerError::retryable(anyhow::anyhow!(
                        "produce to {topic}: {unsent}"
                    )));
            }
        }
    }
    published
}

fn sns_attribute(
    attribute: &Attribute,
) -> Result<MessageAttributeValue, aws_sdk_sns::error::BuildError> {
    let (data_type, value) = match attribute {
        Attribute::String(v) => ("String", v),
        Attribute::Number(v) => ("Number", v),
    };
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
}
