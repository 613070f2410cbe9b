//! The one SQS batch processor every SQS-triggered function uses (partial batch responses).
//!
//! Each message is decoded in its own span. Decoded messages are grouped by a key the caller
//! chooses (e.g. the webtoon they change): groups run concurrently, bounded, and the messages of
//! one group run in arrival order, so two requests for the same entity never race. Every failure
//! is reported in `batchItemFailures`; only those messages come back, the rest are deleted.
//! A permanent failure is logged as a warning with its reason (after `maxReceiveCount` tries SQS
//! moves it to the DLQ); a retryable one is logged as an error. After a retryable failure the
//! rest of its group is held back too, so order is kept when the group is redelivered.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use domain::WorkerError;
use futures::StreamExt as _;
use tracing::{Instrument as _, Span};

use crate::emf::{Metrics, Unit};

/// A decoded message and the group whose order it must keep.
pub struct Decoded<T> {
    pub group: String,
    pub item: T,
}

/// What happened to a batch, beside the response returned to Lambda.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub succeeded: usize,
    pub permanent: usize,
    pub retryable: usize,
}

struct Pending<T> {
    message_id: String,
    span: Span,
    item: T,
}

pub async fn process<T, D, H, Fut>(
    event: SqsEvent,
    concurrency: usize,
    decode: D,
    handle: H,
) -> (SqsBatchResponse, BatchSummary)
where
    D: Fn(&SqsMessage) -> Result<Decoded<T>, WorkerError>,
    H: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), WorkerError>>,
{
    let started = Instant::now();
    let total = event.records.len();
    let mut failures = Vec::new();
    let mut summary = BatchSummary::default();
    let mut groups: Vec<Vec<Pending<T>>> = Vec::new();
    let mut group_index: HashMap<String, usize> = HashMap::new();

    for message in &event.records {
        let Some(message_id) = message.message_id.clone() else {
            // Without an id the message cannot be reported; SQS will redeliver it on timeout.
            tracing::error!("SQS record without messageId skipped");
            summary.permanent += 1;
            continue;
        };
        let queue = message
            .event_source_arn
            .as_deref()
            .map(crate::aws::arn_resource)
            .unwrap_or("unknown");
        let receive_count = message
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str)
            .unwrap_or("?");
        let span = tracing::info_span!("sqs_message", %message_id, queue, receive_count);
        match span.in_scope(|| decode(message)) {
            Ok(Decoded { group, item }) => {
                let index = *group_index.entry(group).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[index].push(Pending {
                    message_id,
                    span,
                    item,
                });
            }
            Err(err) => {
                span.in_scope(|| report(&err));
                tally(&mut summary, &err);
                failures.push(message_id);
            }
        }
    }

    let handle = &handle;
    let results: Vec<Vec<(String, Result<(), WorkerError>)>> = futures::stream::iter(groups)
        .map(|group| async move {
            let mut results = Vec::with_capacity(group.len());
            let mut held_back = false;
            for Pending {
                message_id,
                span,
                item,
            } in group
            {
                let result = if held_back {
                    Err(WorkerError::retryable(anyhow::anyhow!(
                        "held back behind an earlier message of the same group"
                    )))
                } else {
                    handle(item).instrument(span.clone()).await
                };
                if let Err(err) = &result {
                    span.in_scope(|| report(err));
                    held_back |= err.is_retryable();
                }
                results.push((message_id, result));
            }
            results
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    for (message_id, result) in results.into_iter().flatten() {
        match result {
            Ok(()) => summary.succeeded += 1,
            Err(err) => {
                tally(&mut summary, &err);
                failures.push(message_id);
            }
        }
    }

    let elapsed = started.elapsed();
    let mut metrics = Metrics::for_function(crate::telemetry::function_name());
    metrics
        .put("BatchSize", total as f64, Unit::Count)
        .put("Processed", summary.succeeded as f64, Unit::Count)
        .put("PermanentFailures", summary.permanent as f64, Unit::Count)
        .put("RetryableFailures", summary.retryable as f64, Unit::Count)
        .put(
            "BatchDuration",
            elapsed.as_secs_f64() * 1e3,
            Unit::Milliseconds,
        );
    metrics.emit();
    tracing::info!(
        total,
        succeeded = summary.succeeded,
        permanent = summary.permanent,
        retryable = summary.retryable,
        elapsed_ms = elapsed.as_millis() as u64,
        "SQS batch processed"
    );

    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    (response, summary)
}

fn report(err: &WorkerError) {
    match err {
        WorkerError::Rejected(rejection) => {
            tracing::warn!(error.kind = err.kind(), reason = %rejection, "message rejected");
        }
        WorkerError::Retryable(cause) => {
            tracing::error!(
                error.kind = err.kind(),
                error = format!("{cause:#}"),
                "message failed, will be retried"
            );
        }
    }
}

fn tally(summary: &mut BatchSummary, err: &WorkerError) {
    if err.is_retryable() {
        summary.retryable += 1;
    } else {
        summary.permanent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn event(bodies: &[&str]) -> SqsEvent {
        let records: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                serde_json::json!({
                    "messageId": format!("m{i}"),
                    "body": body,
                    "eventSourceARN": "arn:aws:sqs:ap-northeast-2:123456789012:q",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).expect("valid event")
    }

    /// Bodies look like `group:action`; action `bad` fails decoding, `down` fails retryably.
    fn decode(message: &SqsMessage) -> Result<Decoded<String>, WorkerError> {
        let body = message.body.clone().unwrap_or_default();
        let (group, action) = body.split_once(':').unwrap_or(("", ""));
        if action == "bad" {
            return Err(WorkerError::malformed("bad body"));
        }
        Ok(Decoded {
            group: group.to_owned(),
            item: body.clone(),
        })
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
        let mut ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn good_messages_succeed_beside_failures_and_groups_keep_order() {
        let seen = Mutex::new(Vec::new());
        let (response, summary) = process(
            event(&["a:1", "b:bad", "a:2", "c:down", "c:3", "d:4"]),
            4,
            decode,
            |item: String| {
                seen.lock().expect("lock").push(item.clone());
                async move {
                    if item.ends_with("down") {
                        Err(WorkerError::retryable(anyhow::anyhow!("db down")))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        // m1 failed decoding, m3 failed retryably and m4 (same group) was held back behind it.
        assert_eq!(failed_ids(&response), ["m1", "m3", "m4"]);
        assert_eq!(
            summary,
            BatchSummary {
                succeeded: 3,
                permanent: 1,
                retryable: 2
            }
        );
        let seen = seen.into_inner().expect("lock");
        let a: Vec<_> = seen.iter().filter(|s| s.starts_with("a:")).collect();
        assert_eq!(a, ["a:1", "a:2"]);
        assert!(!seen.contains(&"c:3".to_owned()), "held-back message ran");
    }

    #[tokio::test]
    async fn a_permanent_failure_does_not_hold_back_its_group() {
        let (response, summary) = process(
            event(&["a:x", "a:y"]),
            2,
            decode,
            |item: String| async move {
                if item == "a:x" {
                    Err(WorkerError::malformed("rejected"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
        assert_eq!(failed_ids(&response), ["m0"]);
        assert_eq!(summary.succeeded, 1);
    }
}
