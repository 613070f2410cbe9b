//! daily-collection (SPEC §3, issue 19), 02:00 Asia/Seoul: reads every platform's catalog feed
//! (`CATALOG_FEEDS`) through the guarded HTTP client, at a polite pace per platform, and sends
//! each new title as a create request and each changed one as an update request to
//! webtoon-sync's queues, in batches. webtoon-sync does the rest.
//!
//! A title is changed when the hash of its entry differs from the one stored when its last
//! request went out (`catalog_entries`). The hash is stored only once the request is on the
//! queue, and the request id is derived from the hash, so a crash resends what was not recorded
//! (webtoon-sync deduplicates by request id) and a re-run sends nothing twice.
//!
//! Platforms are collected side by side and apart: one that fails (down, refusing, serving
//! garbage) is reported with its reason, and the others are sent. When a platform's failure may
//! pass (an outage), the run fails after its summary, so Lambda retries it; what was sent stays
//! sent.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use adapters::aws;
use adapters::bootstrap::ScheduledJob;
use adapters::db;
use adapters::emf::{Metrics, Unit};
use adapters::guarded_http::{FetchError, FetchPolicy, GuardedClient};
use adapters::jobs::{JobRun, Reporter};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{NaiveDate, Utc};
use domain::WorkerError;
use domain::catalog::{
    Change, Feed, PlatformSummary, Request, batches, classify, gone, next_page, parse_feeds,
    parse_page, prepare,
};
use domain::webtoon::{Platform, RequestKind};
use futures::StreamExt as _;
use futures::stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, instrument, warn};
use url::Url;

pub const JOB: &str = "daily-collection";
/// Refused entries listed by reason, and gone titles by id, in the summary, per platform (all
/// are counted).
const LISTED_FAILURES: usize = 10;
/// SendMessageBatch calls in flight per page. SQS takes far more; against the local endpoint
/// (moto, the benchmark's bottleneck) 4 measured better than 8 (docs/benchmarks.md#toonpick).
const SEND_CONCURRENCY: usize = 4;

/// daily-collection's own settings.
#[derive(Deserialize)]
struct Settings {
    /// None configured (the template's default) is a run that collects nothing, not a
    /// function that cannot start.
    #[serde(default)]
    catalog_feeds: String,
    webtoon_create_queue_url: String,
    webtoon_update_queue_url: String,
    catalog_requests_per_second: Option<f64>,
    catalog_max_pages: Option<usize>,
}

/// How a feed is read: the pace and the page limit, besides the client's own guards.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The least time between two requests to one platform.
    pub interval: Duration,
    /// Pages read per platform at most; a feed that goes on is cut off there and reported.
    pub max_pages: usize,
}

impl Pace {
    /// `requests_per_second` (default 2) and `max_pages` (default 500).
    pub fn new(requests_per_second: Option<f64>, max_pages: Option<usize>) -> Self {
        let rps = requests_per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .unwrap_or(2.0);
        Self {
            interval: Duration::from_secs_f64(1.0 / rps),
            max_pages: max_pages.unwrap_or(500).max(1),
        }
    }
}

pub struct Deps {
    pub reporter: Reporter,
    pub sqs: aws_sdk_sqs::Client,
    pub client: GuardedClient,
    pub feeds: Vec<Feed>,
    pub create_queue_url: String,
    pub update_queue_url: String,
    pub pace: Pace,
}

impl Deps {
    /// From the environment: the scheduled job's base, `CATALOG_FEEDS`
    /// (`NAVER=https://…,KAKAO=https://…`), `WEBTOON_CREATE_QUEUE_URL`,
    /// `WEBTOON_UPDATE_QUEUE_URL`, the pace (`CATALOG_REQUESTS_PER_SECOND`, 2;
    /// `CATALOG_MAX_PAGES`, 500) and the fetch guards (`CATALOG_MAX_BYTES`, 16 MiB a page;
    /// `CATALOG_FETCH_TIMEOUT_MS`, 30 s; `CATALOG_MAX_REDIRECTS`, 3;
    /// `CATALOG_FETCH_ALLOW_HOSTS`, none).
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = adapters::config::from_env()?;
        let feeds = parse_feeds(&settings.catalog_feeds)
            .map_err(|err| anyhow::anyhow!("CATALOG_FEEDS: {err}"))?;
        let policy = FetchPolicy::from_env("CATALOG", default_policy())?;
        let base = ScheduledJob::from_env().await?;
        Ok(Self {
            sqs: aws::sqs(&base.sdk),
            reporter: base.reporter,
            client: GuardedClient::new(&policy, "catalog-collector")?,
            feeds,
            create_queue_url: settings.webtoon_create_queue_url,
            update_queue_url: settings.webtoon_update_queue_url,
            pace: Pace::new(
                settings.catalog_requests_per_second,
                settings.catalog_max_pages,
            ),
        })
    }

    fn queue(&self, kind: RequestKind) -> &str {
        match kind {
            RequestKind::Create => &self.create_queue_url,
            RequestKind::Update => &self.update_queue_url,
        }
    }
}

/// A catalog page may be large (thousands of titles with their episodes), and slow.
pub fn default_policy() -> FetchPolicy {
    FetchPolicy {
        max_bytes: 16 * 1024 * 1024,
        timeout: Duration::from_secs(30),
        ..FetchPolicy::default()
    }
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    JobRun::execute(JOB, payload, &deps.reporter, |run| run_job(run, deps)).await
}

/// One platform's collection: its counts, the reasons of its first refusals and its first gone
/// titles.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub summary: PlatformSummary,
    pub refusals: Vec<String>,
    pub gone: Vec<String>,
}

/// What the last collections recorded of one title.
struct Stored {
    content_hash: String,
    seen_on: NaiveDate,
}

async fn run_job(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let collected: Vec<(Platform, Collected)> =
        futures::future::join_all(deps.feeds.iter().map(|feed| async {
            (
                feed.platform,
                collect(deps, feed, run.target_date, run.dry_run).await,
            )
        }))
        .await;

    let total =
        |f: fn(&PlatformSummary) -> i64| collected.iter().map(|(_, c)| f(&c.summary)).sum::<i64>();
    let platforms_failed = collected
        .iter()
        .filter(|(_, c)| c.summary.error.is_some())
        .count();
    emit_metrics(&collected, platforms_failed);
    let counts = [
        ("platforms", collected.len() as i64),
        ("fetched", total(|s| s.fetched)),
        ("new_titles", total(|s| s.new)),
        ("changed_titles", total(|s| s.changed)),
        ("unchanged_titles", total(|s| s.unchanged)),
        ("failed_titles", total(|s| s.failed)),
        ("gone_titles", total(|s| s.gone.unwrap_or(0))),
    ];
    let platforms: serde_json::Map<String, Value> = collected
        .iter()
        .map(|(platform, c)| {
            let mut entry = json!(c.summary);
            entry["refusals"] = json!(c.refusals);
            if c.summary.gone.is_some() {
                entry["gone_titles"] = json!(c.gone);
            }
            (platform.as_str().to_owned(), entry)
        })
        .collect();
    let retry: Vec<String> = collected
        .iter()
        .filter(|(_, c)| c.summary.retryable)
        .map(|(p, c)| {
            format!(
                "{}: {}",
                p.as_str(),
                c.summary.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    let summary = run
        .report(
            &deps.reporter,
            &counts,
            json!({ "platforms_failed": platforms_failed, "platforms": platforms }),
        )
        .await?;
    if !retry.is_empty() {
        // Sent titles are recorded: the retry fetches again and sends only what is still new.
        return Err(WorkerError::retryable(anyhow::anyhow!(
            "platforms to retry: {}",
            retry.join("; ")
        )));
    }
    Ok(summary)
}

/// Per platform, what it brought (the alarms and the dashboard read these), and how many
/// platforms failed (alarmed on).
fn emit_metrics(collected: &[(Platform, Collected)], platforms_failed: usize) {
    let function = adapters::telemetry::function_name();
    for (platform, c) in collected {
        let mut metrics = Metrics::for_function(function.clone())
            .dimension("Job", JOB)
            .dimension("Platform", platform.as_str());
        metrics.put("NewTitles", c.summary.new as f64, Unit::Count);
        metrics.put("ChangedTitles", c.summary.changed as f64, Unit::Count);
        metrics.put("FailedTitles", c.summary.failed as f64, Unit::Count);
        if let Some(gone) = c.summary.gone {
            metrics.put("GoneTitles", gone as f64, Unit::Count);
        }
        metrics.emit();
    }
    let mut metrics = Metrics::for_function(function).dimension("Job", JOB);
    metrics.put("PlatformsFailed", platforms_failed as f64, Unit::Count);
    metrics.emit();
}

/// Collects one platform. Never fails: what goes wrong is in the summary. Pages are fetched
/// at the platform's pace while the titles of the pages already read are classified and sent,
/// so the wait between requests is not added to the sending. A feed read to its end also says
/// which stored titles it no longer lists; they are reported, not deleted (webtoon-sync has no
/// delete request, and a platform's listing may drop a title only for a while).
#[instrument(skip(deps, feed), fields(platform = feed.platform.as_str()))]
pub async fn collect(deps: &Deps, feed: &Feed, day: NaiveDate, dry_run: bool) -> Collected {
    let mut out = Collected::default();
    let stored = match stored_hashes(deps, feed.platform).await {
        Ok(stored) => stored,
        Err(err) => {
            out.summary.retryable = err.is_retryable();
            out.summary.error = Some(format!("read the last collection: {err}"));
            return out;
        }
    };
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel::<Vec<Value>>(4);
    let fetching = fetch_feed(deps, feed, pages_tx);
    let processing = async {
        let mut page = Page {
            deps,
            platform: feed.platform,
            day,
            dry_run,
            stored: &stored,
            seen: HashSet::new(),
            now: Utc::now(),
        };
        while let Some(entries) = pages_rx.recv().await {
            page.process(entries, &mut out).await;
        }
        page.seen
    };
    let ((pages, fetch_error), listed) = tokio::join!(fetching, processing);
    out.summary.pages = pages;
    match fetch_error {
        Some(err) => {
            warn!(error = %err, retryable = err.is_retryable(), "catalog feed failed");
            out.summary.retryable |= err.is_retryable();
            out.summary.error = Some(err.to_string());
        }
        None => {
            let gone = gone(
                stored.iter().map(|(id, s)| (id.as_str(), s.seen_on)),
                &listed,
            );
            out.summary.gone = Some(gone.len() as i64);
            out.gone = gone
                .iter()
                .take(LISTED_FAILURES)
                .map(|(id, last)| domain::text::storable(&format!("{id} (last listed {last})")))
                .collect();
        }
    }
    info!(summary = %out.summary, "platform collected");
    out
}

/// What processing a platform's pages shares.
struct Page<'a> {
    deps: &'a Deps,
    platform: Platform,
    day: NaiveDate,
    dry_run: bool,
    stored: &'a HashMap<String, Stored>,
    /// The ids the feed lists, valid entries or not: one listed twice is refused.
    seen: HashSet<String>,
    now: chrono::DateTime<Utc>,
}

impl Page<'_> {
    /// Checks, classifies and (unless a dry run) sends one page's entries.
    async fn process(&mut self, entries: Vec<Value>, out: &mut Collected) {
        let first = out.summary.fetched;
        out.summary.fetched += entries.len() as i64;
        let mut to_send: Vec<(Request, String, String)> = Vec::new();
        let mut unchanged = Vec::new();
        for (index, raw) in (first..).zip(entries) {
            if let Some(id) = raw.get("external_id").and_then(Value::as_str)
                && !self.seen.insert(id.to_owned())
            {
                out.refuse(format!("{id}: listed twice"));
                continue;
            }
            let entry = match prepare(self.platform, raw, self.now) {
                Ok(entry) => entry,
                Err(err) => {
                    out.refuse(format!("entry {index}: {err}"));
                    continue;
                }
            };
            let change = classify(
                self.stored
                    .get(&entry.external_id)
                    .map(|s| s.content_hash.as_str()),
                &entry.content_hash,
            );
            match change {
                Change::New => out.summary.new += 1,
                Change::Changed => out.summary.changed += 1,
                Change::Unchanged => out.summary.unchanged += 1,
            }
            match change.kind() {
                Some(kind) => match entry.request(self.platform, kind, self.now) {
                    Ok(request) => to_send.push((request, entry.external_id, entry.content_hash)),
                    Err(err) => out.refuse(format!("{}: {err}", entry.external_id)),
                },
                None => unchanged.push(entry.external_id),
            }
        }
        if self.dry_run {
            return;
        }
        if let Err(err) = sqlx::query_file!(
            "sql/mark_seen.sql",
            self.platform.as_str(),
            &unchanged,
            self.day
        )
        .execute(&self.deps.reporter.db)
        .await
        {
            // Only bookkeeping: the next run marks them.
            warn!(error = %err, "mark unchanged titles seen");
        }
        for (reason, retryable) in send_all(self.deps, self.platform, self.day, to_send).await {
            out.summary.retryable |= retryable;
            if retryable && out.summary.error.is_none() {
                out.summary.error = Some(format!("send requests: {reason}"));
            }
            out.refuse(reason);
        }
    }
}

impl Collected {
    fn refuse(&mut self, reason: String) {
        self.summary.failed += 1;
        if self.refusals.len() < LISTED_FAILURES {
            self.refusals.push(domain::text::storable(&reason));
        }
    }
}

/// Reads a feed page by page, politely, handing each page's entries on as it arrives; returns
/// how many pages were read, and the error that stopped it.
async fn fetch_feed(
    deps: &Deps,
    feed: &Feed,
    pages: tokio::sync::mpsc::Sender<Vec<Value>>,
) -> (i64, Option<FeedError>) {
    let mut read = 0_i64;
    let mut ticks = tokio::time::interval(deps.pace.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut url: Url = feed.url.clone();
    let mut visited = HashSet::new();
    loop {
        if read as usize >= deps.pace.max_pages {
            return (read, Some(FeedError::TooManyPages(deps.pace.max_pages)));
        }
        if !visited.insert(url.clone()) {
            return (read, Some(FeedError::Loop(url.to_string())));
        }
        ticks.tick().await;
        let fetched = match deps
            .client
            .get(&url, "application/json", "application/json")
            .await
        {
            Ok(fetched) => fetched,
            Err(err) => return (read, Some(FeedError::Fetch(err))),
        };
        read += 1;
        let page = match parse_page(&fetched.bytes) {
            Ok(page) => page,
            Err(err) => return (read, Some(FeedError::Page(err))),
        };
        let next = page.next;
        if pages.send(page.entries).await.is_err() {
            return (read, None);
        }
        match next {
            None => return (read, None),
            Some(next) => match next_page(&feed.url, &url, &next) {
                Ok(next) => url = next,
                Err(err) => return (read, Some(FeedError::Page(err))),
            },
        }
    }
}

/// Why a feed could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("fetch: {0}")]
    Fetch(FetchError),
    #[error("page: {0}")]
    Page(WorkerError),
    #[error("more than {0} pages")]
    TooManyPages(usize),
    #[error("the feed links back to {0}")]
    Loop(String),
}

impl FeedError {
    /// Outages may pass; a feed that is broken stays broken until its platform fixes it.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Fetch(err) => err.is_retryable(),
            Self::Page(_) | Self::TooManyPages(_) | Self::Loop(_) => false,
        }
    }
}

async fn stored_hashes(
    deps: &Deps,
    platform: Platform,
) -> Result<HashMap<String, Stored>, WorkerError> {
    let rows = sqlx::query_file!("sql/stored_hashes.sql", platform.as_str())
        .fetch_all(&deps.reporter.db)
        .await
        .map_err(db::classify)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let stored = Stored {
                content_hash: row.content_hash,
                seen_on: row.seen_on,
            };
            (row.external_id, stored)
        })
        .collect())
}

/// Sends the requests in batches per queue, recording each batch's titles once SQS has them.
/// Returns the reason for each request not sent, and whether it may pass.
async fn send_all(
    deps: &Deps,
    platform: Platform,
    day: NaiveDate,
    requests: Vec<(Request, String, String)>,
) -> Vec<(String, bool)> {
    let mut keys: HashMap<String, (String, String)> = HashMap::new();
    let (mut creates, mut updates) = (Vec::new(), Vec::new());
    for (request, external_id, hash) in requests {
        keys.insert(request.request_id.clone(), (external_id, hash));
        match request.kind {
            RequestKind::Create => creates.push(request),
            RequestKind::Update => updates.push(request),
        }
    }
    let mut failures = Vec::new();
    let mut calls = Vec::new();
    for (kind, requests) in [
        (RequestKind::Create, creates),
        (RequestKind::Update, updates),
    ] {
        let (chunks, oversized) = batches(requests);
        for request in oversized {
            failures.push((
                format!("{}: larger than one SQS message", request.request_id),
                false,
            ));
        }
        for chunk in chunks {
            calls.push(send_batch(deps, kind, chunk, &keys, platform, day));
        }
    }
    let mut results = stream::iter(calls).buffer_unordered(SEND_CONCURRENCY);
    while let Some(failed) = results.next().await {
        failures.extend(failed);
    }
    failures
}

/// One SendMessageBatch, then the record of what it sent.
async fn send_batch(
    deps: &Deps,
    kind: RequestKind,
    chunk: Vec<Request>,
    keys: &HashMap<String, (String, String)>,
    platform: Platform,
    day: NaiveDate,
) -> Vec<(String, bool)> {
    let mut failures = Vec::new();
    let mut entries = Vec::with_capacity(chunk.len());
    for (index, request) in chunk.iter().enumerate() {
        match SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(&request.body)
            .build()
        {
            Ok(entry) => entries.push(entry),
            Err(err) => failures.push((format!("{}: {err}", request.request_id), false)),
        }
    }
    let sent = deps
        .sqs
        .send_message_batch()
        .queue_url(deps.queue(kind))
        .set_entries(Some(entries))
        .send()
        .await;
    let sent_ids: HashSet<String> = match sent {
        Ok(output) => {
            for failed in output.failed {
                let request = failed.id.parse::<usize>().ok().and_then(|i| chunk.get(i));
                let id = request.map_or("?", |r| r.request_id.as_str());
                failures.push((
                    format!("{id}: {}", failed.message.unwrap_or(failed.code)),
                    !failed.sender_fault,
                ));
            }
            output.successful.into_iter().map(|s| s.id).collect()
        }
        Err(err) => {
            let reason = format!("{:#}", anyhow::Error::new(err));
            for request in &chunk {
                failures.push((format!("{}: {reason}", request.request_id), true));
            }
            return failures;
        }
    };
    let mut ids = Vec::new();
    let mut hashes = Vec::new();
    let mut request_ids = Vec::new();
    for (index, request) in chunk.iter().enumerate() {
        if let Some((external_id, hash)) = sent_ids
            .contains(&index.to_string())
            .then(|| keys.get(&request.request_id))
            .flatten()
        {
            ids.push(external_id.clone());
            hashes.push(hash.clone());
            request_ids.push(request.request_id.clone());
        }
    }
    if let Err(err) = sqlx::query_file!(
        "sql/record_sent.sql",
        platform.as_str(),
        &ids,
        &hashes,
        &request_ids,
        day
    )
    .execute(&deps.reporter.db)
    .await
    {
        // On the queue but not recorded: the next run sends them again under the same request
        // ids, which webtoon-sync answers as duplicates.
        warn!(error = %err, titles = ids.len(), "record sent titles");
    }
    failures
}
