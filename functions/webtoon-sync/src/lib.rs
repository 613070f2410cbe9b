//! webtoon-sync: consumes webtoon create and update requests from SQS (SPEC §1), stores the
//! webtoon with its authors, genres, episodes and images, and answers each request with exactly
//! one completion message.
//!
//! Delivery is at-least-once, so every request id is recorded in a ledger in the same
//! transaction as its change. A redelivered request finds its ledger row and changes nothing;
//! if the earlier attempt crashed after committing but before the completion was sent, the
//! recorded completion (same body) is sent now. Consumers of the complete queues de-duplicate on
//! `request_id` for the rare crash between sending and marking as sent.

mod store;

use std::collections::HashMap;

use adapters::bootstrap::SqsConsumer;
use adapters::images::{FetchPolicy, ImageFetcher, ImageStore};
use adapters::sqs_batch::{self, Decoded};
use adapters::{aws, config};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageAttributeValue;
use domain::WorkerError;
use domain::webtoon::{Completion, ImageFailure, RequestKind, WebtoonRequest, parse_request};
use futures::StreamExt as _;
use serde::Deserialize;
use sqlx::PgPool;

use store::Applied;

/// Images fetched at once for one request.
const IMAGE_CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct CompletionQueues {
    pub create_url: String,
    pub update_url: String,
}

impl CompletionQueues {
    fn for_kind(&self, kind: RequestKind) -> &str {
        match kind {
            RequestKind::Create => &self.create_url,
            RequestKind::Update => &self.update_url,
        }
    }
}

/// webtoon-sync's own settings.
#[derive(Deserialize)]
struct Settings {
    image_bucket: String,
    create_complete_queue_url: String,
    update_complete_queue_url: String,
    batch_concurrency: Option<usize>,
}

/// Clients and pools, built once per cold start and borrowed by every invocation.
pub struct Deps {
    pub db: PgPool,
    pub sqs: aws_sdk_sqs::Client,
    pub images: ImageStore,
    pub fetcher: ImageFetcher,
    pub queues: CompletionQueues,
    pub concurrency: usize,
}

impl Deps {
    /// From the environment: the SQS consumer's base, `IMAGE_BUCKET`, the completion queues
    /// (`CREATE_COMPLETE_QUEUE_URL`, `UPDATE_COMPLETE_QUEUE_URL`), the image fetch policy
    /// (`IMAGE_*`) and `BATCH_CONCURRENCY` (4).
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let queues = CompletionQueues {
            create_url: settings.create_complete_queue_url,
            update_url: settings.update_complete_queue_url,
        };
        let fetch = FetchPolicy::from_env("IMAGE", FetchPolicy::default())?;
        let concurrency = settings.batch_concurrency.unwrap_or(4);
        let base = SqsConsumer::from_env().await?;
        Ok(Self {
            images: ImageStore::new(aws::s3(&base.sdk), &settings.image_bucket),
            fetcher: ImageFetcher::new(&fetch)?,
            db: base.db,
            sqs: base.sqs,
            queues,
            concurrency,
        })
    }
}

/// The handler: one SQS batch in, the messages to retry out.
pub async fn handle(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    let (response, _summary) = sqs_batch::process(event, deps.concurrency, decode, |request| {
        process(request, deps)
    })
    .await;
    response
}

/// Requests for one webtoon form a group, so they apply in the order they arrived.
fn decode(message: &SqsMessage) -> Result<Decoded<WebtoonRequest>, WorkerError> {
    let queue = message
        .event_source_arn
        .as_deref()
        .map(aws::arn_resource)
        .unwrap_or_default();
    let kind = RequestKind::from_queue_name(queue).ok_or_else(|| {
        WorkerError::inconsistent(format_args!("message from unexpected queue {queue:?}"))
    })?;
    let body = message
        .body
        .as_deref()
        .ok_or_else(|| WorkerError::missing("message has no body"))?;
    let request = parse_request(kind, body, chrono::Utc::now())?;
    Ok(Decoded {
        group: request.key.to_string(),
        item: request,
    })
}

#[tracing::instrument(skip_all, fields(request_id = %request.request_id, webtoon = %request.key, kind = request.kind.as_str()))]
async fn process(request: WebtoonRequest, deps: &Deps) -> Result<(), WorkerError> {
    if let Some(prior) = store::find_request(&deps.db, &request.request_id).await? {
        if prior.completion_sent {
            tracing::info!("duplicate request, already completed");
            return Ok(());
        }
        tracing::info!("duplicate request, sending the recorded completion");
        return deliver(deps, &prior.completion).await;
    }

    let (stored, image_failures) = store_images(deps, &request).await?;
    match store::apply(&deps.db, &request, &stored, image_failures).await? {
        Applied::Recorded(completion) => {
            tracing::info!(
                outcome = completion.outcome.as_str(),
                webtoon_id = completion.webtoon_id,
                "request applied"
            );
            deliver(deps, &completion).await
        }
        Applied::AlreadyRecorded => {
            // Another delivery of the same request won the ledger row and sends the completion.
            tracing::info!("duplicate request, recorded concurrently");
            Ok(())
        }
    }
}

/// Fetches and stores every image the request names, skipping URLs already stored for this
/// webtoon. A URL the source got wrong (refused, too large, not an image, 404) is reported in
/// the completion and the webtoon is saved without it; a transient fault retries the message.
async fn store_images(
    deps: &Deps,
    request: &WebtoonRequest,
) -> Result<(HashMap<String, String>, Vec<ImageFailure>), WorkerError> {
    let urls = request.image_urls();
    let mut stored = store::known_images(&deps.db, &request.key, &urls).await?;
    let missing: Vec<_> = urls
        .into_iter()
        .filter(|url| !stored.contains_key(url.as_str()))
        .collect();

    let results: Vec<_> = futures::stream::iter(missing)
        .map(|url| async move {
            let outcome = match deps.fetcher.fetch(url).await {
                Ok(image) => deps.images.put(&image).await.map(Ok),
                Err(err) if err.is_retryable() => Err(WorkerError::retryable(anyhow::anyhow!(
                    "fetch image {url}: {err}"
                ))),
                Err(err) => Ok(Err(err.to_string())),
            };
            (url, outcome)
        })
        .buffer_unordered(IMAGE_CONCURRENCY)
        .collect()
        .await;

    let mut failures = Vec::new();
    for (url, outcome) in results {
        match outcome? {
            Ok(key) => {
                stored.insert(url.to_string(), key);
            }
            Err(reason) => {
                tracing::warn!(%url, %reason, "image skipped");
                failures.push(ImageFailure {
                    url: url.to_string(),
                    reason,
                });
            }
        }
    }
    failures.sort_by(|a, b| a.url.cmp(&b.url));
    Ok((stored, failures))
}

/// Sends the completion, then marks it sent. A crash in between resends the same body later.
async fn deliver(deps: &Deps, completion: &Completion) -> Result<(), WorkerError> {
    let body = serde_json::to_string(completion).map_err(|err| {
        WorkerError::retryable(anyhow::Error::new(err).context("encode completion"))
    })?;
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|err| WorkerError::retryable(anyhow::Error::new(err)))
    };
    deps.sqs
        .send_message()
        .queue_url(deps.queues.for_kind(completion.kind))
        .message_body(body)
        .message_attributes("request_id", attribute(&completion.request_id)?)
        .message_attributes("outcome", attribute(completion.outcome.as_str())?)
        .send()
        .await
        .map_err(|err| {
            WorkerError::retryable(anyhow::Error::new(err).context("send completion"))
        })?;
    store::mark_sent(&deps.db, &completion.request_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(file: &str) -> SqsEvent {
        let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
        let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn sample_events_decode_and_group_by_webtoon() {
        for (file, kind) in [
            ("webtoon-sync-create.json", RequestKind::Create),
            ("webtoon-sync-update.json", RequestKind::Update),
        ] {
            let event = sample(file);
            let decoded = decode(&event.records[0]).expect("sample event decodes");
            assert_eq!(decoded.group, "NAVER:783053");
            assert_eq!(decoded.item.kind, kind, "{file}");
        }
    }

    #[test]
    fn the_mixed_sample_has_one_good_and_two_poison_messages() {
        let event = sample("webtoon-sync-mixed-batch.json");
        let results: Vec<_> = event.records.iter().map(decode).collect();
        assert!(results[0].is_ok());
        assert!(
            results[1..]
                .iter()
                .all(|r| matches!(r, Err(WorkerError::Rejected(_))))
        );
    }

    #[test]
    fn messages_from_other_queues_or_without_a_body_are_rejected() {
        let mut message = sample("webtoon-sync-create.json").records.remove(0);
        message.event_source_arn = Some("arn:aws:sqs:ap-northeast-2:123456789012:other".into());
        assert!(
            matches!(decode(&message), Err(WorkerError::Rejected(r)) if r.reason().contains("unexpected queue"))
        );
        let mut message = sample("webtoon-sync-create.json").records.remove(0);
        message.body = None;
        assert!(
            matches!(decode(&message), Err(WorkerError::Rejected(r)) if r.reason().contains("no body"))
        );
    }
}
