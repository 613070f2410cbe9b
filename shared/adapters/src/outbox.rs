//! The transactional outbox every notifying function uses: a message is written to `outbox` in
//! the same transaction as the change it announces, and published to SNS after the commit.
//!
//! **At least once, with a key to de-duplicate by.** [`Outbox::flush`] claims unsent rows
//! (`claimed_at`) and commits before it publishes, so no transaction stays open across SNS
//! calls, then publishes in batches of ten (`PublishBatch`) and marks each one sent. A crash
//! between the publish and the mark publishes that message again once its claim is older than
//! [`CLAIM_TIMEOUT`]; every message carries its `dedup_key` as a message attribute, so a
//! consumer can drop the repeat. An event recorded twice (a replayed batch) is one row:
//! `(producer, dedup_key)` is unique.

use std::time::Duration;

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::notice::{Attribute, Notice};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::db::classify;

/// How long a claimed message may stay unsent before another flush takes it over.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(30);
/// SNS takes at most ten messages per `PublishBatch`.
const BATCH: usize = 10;

/// What a flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub published: usize,
}

/// One producer's messages to one SNS topic.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: PgPool,
    sns: aws_sdk_sns::Client,
    producer: String,
    topic_arn: String,
}

/// A claimed row: id, dedup key, subject, body, attributes, the claim's time.
type Claimed = (i64, String, String, Value, Value, DateTime<Utc>);

impl Outbox {
    /// `producer` names the function that owns the messages (only it publishes them).
    pub fn new(
        db: PgPool,
        sns: aws_sdk_sns::Client,
        producer: impl Into<String>,
        topic_arn: impl Into<String>,
    ) -> Self {
        Self {
            db,
            sns,
            producer: producer.into(),
            topic_arn: topic_arn.into(),
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
        let added = sqlx::query(
            "INSERT INTO outbox (producer, dedup_key, subject, body, attributes)
             SELECT $1, m.* FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::jsonb[]) AS m
             ON CONFLICT (producer, dedup_key) DO NOTHING",
        )
        .bind(&self.producer)
        .bind(&keys)
        .bind(&subjects)
        .bind(&bodies)
        .bind(&attributes)
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(usize::try_from(added).unwrap_or(usize::MAX))
    }

    /// Publishes up to `limit` unsent messages, oldest first. Messages another flush is
    /// publishing are left to it. If SNS fails, what was published stays marked, the rest is
    /// given back, and the error is retryable.
    pub async fn flush(&self, limit: i64) -> Result<Flushed, WorkerError> {
        let claimed: Vec<Claimed> = sqlx::query_as(
            "UPDATE outbox o SET claimed_at = now()
               FROM (SELECT id FROM outbox
                      WHERE producer = $1 AND sent_at IS NULL
                        AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $3))
                      ORDER BY id LIMIT $2
                        FOR UPDATE SKIP LOCKED) AS due
              WHERE o.id = due.id
             RETURNING o.id, o.dedup_key, o.subject, o.body, o.attributes, o.claimed_at",
        )
        .bind(&self.producer)
        .bind(limit)
        .bind(CLAIM_TIMEOUT.as_secs_f64())
        .fetch_all(&self.db)
        .await
        .map_err(classify)?;
        // One statement, one now(): the claim's time is its token.
        let Some(claim) = claimed.first().map(|c| c.5) else {
            return Ok(Flushed::default());
        };
        let mut flushed = Flushed::default();
        for chunk in claimed.chunks(BATCH) {
            let (sent, failure) = self.publish(chunk).await;
            self.settle(&sent, claim, true).await?;
            flushed.published += sent.len();
            if let Some(err) = failure {
                let unsent: Vec<i64> = claimed
                    .iter()
                    .map(|c| c.0)
                    .filter(|id| !sent.contains(id))
                    .collect();
                self.settle(&unsent, claim, false).await?;
                return Err(err);
            }
        }
        Ok(flushed)
    }

    /// Publishes one batch; returns the ids SNS took, and the failure if any was refused.
    async fn publish(&self, rows: &[Claimed]) -> (Vec<i64>, Option<WorkerError>) {
        let mut entries = Vec::with_capacity(rows.len());
        for (id, key, subject, body, attributes, _) in rows {
            let mut entry = PublishBatchRequestEntry::builder()
                .id(id.to_string())
                .subject(subject)
                .message(body.to_string());
            let named = attributes
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(name, v)| {
                    Some((name.clone(), serde_json::from_value(v.clone()).ok()?))
                })
                .chain([("dedup_key".to_owned(), Attribute::String(key.clone()))]);
            for (name, attribute) in named {
                match sns_attribute(&attribute) {
                    Ok(value) => entry = entry.message_attributes(name, value),
                    Err(err) => return (Vec::new(), Some(WorkerError::retryable(err))),
                }
            }
            match entry.build() {
                Ok(entry) => entries.push(entry),
                Err(err) => return (Vec::new(), Some(WorkerError::retryable(err))),
            }
        }
        let answer = self
            .sns
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await;
        match answer {
            Err(err) => (
                Vec::new(),
                Some(WorkerError::retryable(
                    anyhow::Error::new(err).context("SNS publish"),
                )),
            ),
            Ok(answer) => {
                let sent: Vec<i64> = answer
                    .successful()
                    .iter()
                    .filter_map(|s| s.id()?.parse().ok())
                    .collect();
                let failure = answer.failed().first().map(|f| {
                    WorkerError::retryable(anyhow::anyhow!(
                        "SNS refused {} of {} messages: {} {}",
                        answer.failed().len(),
                        rows.len(),
                        f.code(),
                        f.message().unwrap_or_default()
                    ))
                });
                (sent, failure)
            }
        }
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
        let statement = if sent {
            "UPDATE outbox SET sent_at = now() WHERE id = ANY($1) AND claimed_at = $2"
        } else {
            "UPDATE outbox SET claimed_at = NULL
              WHERE id = ANY($1) AND claimed_at = $2 AND sent_at IS NULL"
        };
        sqlx::query(statement)
            .bind(ids)
            .bind(claim)
            .execute(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }
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
