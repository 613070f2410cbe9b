//! Lambda's SQS event source mapping, locally.
//!
//! Pollers long-poll the queue on the local AWS endpoint, gather up to `BatchSize` messages
//! within `MaximumBatchingWindowInSeconds`, hand them to the function as the SQS event Lambda
//! builds, and delete what the function took: every message of a successful invocation, or,
//! with `ReportBatchItemFailures`, every message but those it names. A failed invocation
//! deletes nothing, so the batch becomes visible again after the queue's visibility timeout,
//! and a message received more than the queue's `maxReceiveCount` times is moved to its
//! dead-letter queue by the endpoint (moto does this as SQS does). `ScalingConfig.
//! MaximumConcurrency` is the number of pollers, so it bounds the invocations in flight.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::{Value, json};

use crate::invoke::{Invocation, Invoker};
use crate::report::{Delivery, Tally};
use crate::template::SqsSource;

/// SQS's longest long poll.
const LONGEST_POLL: Duration = Duration::from_secs(20);

/// Runs `source` until no message arrived for `idle` (or forever when `idle` is `None`).
pub async fn run(
    source: &SqsSource,
    sqs: &aws_sdk_sqs::Client,
    invoker: &Invoker,
    idle: Option<Duration>,
) -> anyhow::Result<Tally> {
    let queue_arn = queue_arn(sqs, &source.queue_url).await?;
    eprintln!(
        "sqs-source: {} <- {} (batch {}, window {:?}, {} pollers)",
        source.function, source.queue_url, source.batch_size, source.window, source.max_concurrency
    );
    let pollers =
        (0..source.max_concurrency.max(1)).map(|_| poll(source, &queue_arn, sqs, invoker, idle));
    let tallies = futures::future::try_join_all(pollers).await?;
    Ok(tallies.into_iter().sum::<Tally>())
}

/// The ARN of the queue at `url`, as the endpoint reports it.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("read the attributes of {url} (is the local endpoint up?)"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .with_context(|| format!("{url} has no QueueArn"))
}

/// One poller: receive a batch, invoke, delete what was taken; again.
async fn poll(
    source: &SqsSource,
    queue_arn: &str,
    sqs: &aws_sdk_sqs::Client,
    invoker: &Invoker,
    idle: Option<Duration>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut last_message = Instant::now();
    loop {
        let idle_left = idle.map(|i| i.saturating_sub(last_message.elapsed()));
        let batch = match receive(source, sqs, idle_left).await {
            Ok(batch) => batch,
            Err(err) => {
                // The queue keeps the messages; poll again, as Lambda's pollers do.
                eprintln!(
                    "sqs-source: {}: {err:#}; polling again in 1 s",
                    source.function
                );
                if idle.is_some_and(|idle| last_message.elapsed() >= idle) {
                    return Ok(tally);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            if idle.is_some_and(|idle| last_message.elapsed() >= idle) {
                return Ok(tally);
            }
            continue;
        }
        last_message = Instant::now();
        let event = sqs_event(&batch, queue_arn);
        let (invocation, took) = invoker.invoke(&source.function, &event).await;
        let failed = match &invocation {
            Invocation::Failed(_) | Invocation::Unreachable(_) => batch_ids(&batch),
            Invocation::Returned(answer) if source.report_item_failures => failures(answer, &batch),
            Invocation::Returned(_) => HashSet::new(),
        };
        let taken: Vec<&Message> = batch
            .iter()
            .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
            .collect();
        if let Err(err) = delete(sqs, &source.queue_url, &taken).await {
            // Not deleted, so delivered again after the visibility timeout: at least once.
            eprintln!("sqs-source: {}: {err:#}", source.function);
        }
        let delivery = Delivery {
            function: &source.function,
            source: &source.event,
            records: batch.len(),
            failed: failed.len(),
            invocation: &invocation,
            took,
        };
        delivery.print();
        tally.record(&delivery);
    }
}

/// Up to `BatchSize` messages, gathered within the batching window (at most 10 a receive).
async fn receive(
    source: &SqsSource,
    sqs: &aws_sdk_sqs::Client,
    idle_left: Option<Duration>,
) -> anyhow::Result<Vec<Message>> {
    let mut batch = Vec::new();
    let first_wait = idle_left.unwrap_or(LONGEST_POLL).min(LONGEST_POLL);
    let mut deadline: Option<Instant> = None;
    loop {
        let wait = match deadline {
            None => first_wait,
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
        };
        let wanted = (source.batch_size - batch.len()).min(10);
        let received = sqs
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(wanted as i32)
            // Whole seconds, rounded up: a part of a second left still waits, not spins.
            .wait_time_seconds(wait.as_secs_f64().ceil().min(20.0) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .with_context(|| format!("receive from {}", source.queue_url))?;
        let messages = received.messages.unwrap_or_default();
        let got_none = messages.is_empty();
        batch.extend(messages);
        if batch.is_empty() {
            return Ok(batch);
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + source.window);
        if batch.len() >= source.batch_size
            || Instant::now() >= deadline
            || (got_none && source.window.is_zero())
        {
            return Ok(batch);
        }
    }
}

fn batch_ids(batch: &[Message]) -> HashSet<String> {
    batch
        .iter()
        .filter_map(|m| m.message_id().map(str::to_owned))
        .collect()
}

/// The messages a `ReportBatchItemFailures` answer names. As in Lambda, an answer that names
/// an id not in the batch, or is not the documented shape, fails the whole batch.
fn failures(answer: &Value, batch: &[Message]) -> HashSet<String> {
    let ids = batch_ids(batch);
    let named = match answer.get("batchItemFailures") {
        None | Some(Value::Null) => return HashSet::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item["itemIdentifier"].as_str().map(str::to_owned))
            .collect::<Option<HashSet<String>>>(),
        Some(_) => None,
    };
    match named {
        Some(named) if named.iter().all(|id| ids.contains(id)) => named,
        _ => ids,
    }
}

async fn delete(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    taken: &[&Message],
) -> anyhow::Result<()> {
    for chunk in taken.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(n, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answer = sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .with_context(|| format!("delete from {queue_url}"))?;
        for failed in answer.failed() {
            eprintln!(
                "sqs-source: {queue_url}: message {} not deleted ({}): it will be delivered again",
                failed.id(),
                failed.message().unwrap_or(failed.code())
            );
        }
    }
    Ok(())
}

/// The batch as Lambda's SQS event: the system attributes by their names, message attributes
/// with both value kinds and their list forms, `md5OfBody`, the queue's ARN and its region
/// (`arn:aws:sqs:<region>:<account>:<name>`).
pub fn sqs_event(batch: &[Message], queue_arn: &str) -> Value {
    let region = queue_arn.split(':').nth(3).unwrap_or_default();
    let records: Vec<Value> = batch
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
                .collect();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| {
                    use base64::Engine as _;
                    let binary = value
                        .binary_value()
                        .map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref()));
                    (
                        name.clone(),
                        json!({
                            "stringValue": value.string_value(),
                            "binaryValue": binary,
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": value.data_type(),
                        }),
                    )
                })
                .collect();
            let body = m.body().unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": format!("{:x}", md5::compute(body.as_bytes())),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::MessageAttributeValue;

    use super::*;

    fn message(id: &str, body: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body(body)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .message_attributes(
                "trace",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("abc")
                    .build()
                    .expect("an attribute"),
            )
            .build()
    }

    #[test]
    fn the_event_is_the_one_lambda_builds() -> anyhow::Result<()> {
        let event = sqs_event(
            &[message("m-1", "hello")],
            "arn:aws:sqs:ap-northeast-2:123456789012:q",
        );
        let parsed: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(event)?;
        let record = &parsed.records[0];
        assert_eq!(record.message_id.as_deref(), Some("m-1"));
        assert_eq!(
            record.md5_of_body.as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
        assert_eq!(record.attributes["ApproximateReceiveCount"], "1");
        assert_eq!(
            record.message_attributes["trace"].string_value.as_deref(),
            Some("abc")
        );
        assert_eq!(
            record.event_source_arn.as_deref(),
            Some("arn:aws:sqs:ap-northeast-2:123456789012:q")
        );
        assert_eq!(record.aws_region.as_deref(), Some("ap-northeast-2"));
        Ok(())
    }

    #[test]
    fn only_the_named_failures_stay_unless_the_answer_is_wrong() {
        let batch = [message("a", "1"), message("b", "2")];
        let named = |answer: Value| {
            let mut ids: Vec<String> = failures(&answer, &batch).into_iter().collect();
            ids.sort();
            ids
        };
        assert_eq!(
            named(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})),
            ["b"]
        );
        assert!(named(json!({"batchItemFailures": []})).is_empty());
        assert!(named(json!(null)).is_empty());
        assert_eq!(
            named(json!({"batchItemFailures": [{"itemIdentifier": "zz"}]})),
            ["a", "b"]
        );
        assert_eq!(named(json!({"batchItemFailures": "b"})), ["a", "b"]);
        assert_eq!(
            named(json!({"batchItemFailures": [{"id": "b"}]})),
            ["a", "b"]
        );
    }
}
