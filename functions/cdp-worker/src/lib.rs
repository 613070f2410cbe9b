//! cdp-worker (SPEC §3, issue 17): the CDP dataset of one advertiser-month, from a jobs-queue
//! message the orchestrator sent.
//!
//! The month runs only under the token it was queued with (`QUEUED → RUNNING`), so a duplicate
//! message, at once or later, does nothing. Its two datasets are written as Parquet to
//! `cdp/advertiser_id=…/month=YYYY-MM/{performance,audience}.parquet`, streamed from the
//! database a chunk at a time, and the month is recorded COMPLETED with its counts and one
//! summary row per dataset (records, bytes, SHA-256), or FAILED with its error and the retry
//! the backoff allows. Either way the advertiser is advanced at once: its next backfill month
//! is queued (or its retry, with the delay it is owed), so a backfill does not wait for ticks.
//!
//! A message that is not a job is refused (after the queue's retries it is in the DLQ with its
//! reason); when even the outcome cannot be recorded (the database is down) the message is
//! retried, and its month can be run again once the lease (the function's timeout) is over.

mod columns;

use std::path::Path;

use adapters::backfill::{Backfill, Failure};
use adapters::bootstrap::SqsConsumer;
use adapters::outbox::Outbox;
use adapters::sqs_batch::{self, Decoded};
use adapters::{aws, config, db};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_s3::primitives::ByteStream;
use chrono::NaiveDate;
use domain::WorkerError;
use domain::backfill::{
    DailyCounts, Dataset, Job, audience_retained, device_key, finished_days, object_key,
};
use domain::calendar::{kst_date, kst_day_start};
use futures::TryStreamExt as _;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tracing::{info, instrument, warn};

use columns::{AudienceChunk, Chunk, DeviceFact, PerformanceChunk, TempFile, Written};

/// cdp-worker's own settings.
#[derive(Deserialize)]
struct Settings {
    cdp_bucket: String,
    jobs_queue_url: String,
    operator_alerts_topic_arn: String,
    /// Rows per row group, the unit that is held in memory.
    cdp_chunk_rows: Option<usize>,
    /// A month with more records than this fails (a guard, not a design limit).
    cdp_max_records: Option<u64>,
    /// How long a month may run before its redelivered message may run it again: the
    /// function's timeout.
    cdp_lease_seconds: Option<u32>,
    /// Months one invocation runs at once (of different advertisers).
    cdp_concurrency: Option<usize>,
}

/// Limits a run works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub chunk_rows: usize,
    pub max_records: u64,
    pub lease_seconds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            chunk_rows: 65_536,
            max_records: 20_000_000,
            lease_seconds: 600,
        }
    }
}

/// Clients and pools, built once per cold start and borrowed by every invocation.
pub struct Deps {
    pub db: PgPool,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub backfill: Backfill,
    pub limits: Limits,
    pub concurrency: usize,
}

impl Deps {
    /// From the environment: the SQS consumer's base, `CDP_BUCKET`, `JOBS_QUEUE_URL`,
    /// `OPERATOR_ALERTS_TOPIC_ARN`, and the limits `CDP_CHUNK_ROWS` (65,536),
    /// `CDP_MAX_RECORDS` (20,000,000), `CDP_LEASE_SECONDS` (600), `CDP_CONCURRENCY` (2).
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let base = SqsConsumer::from_env().await?;
        let defaults = Limits::default();
        let outbox = Outbox::new(
            base.db.clone(),
            aws::sns(&base.sdk),
            adapters::backfill::PRODUCER,
            settings.operator_alerts_topic_arn,
        );
        Ok(Self {
            s3: aws::s3(&base.sdk),
            bucket: settings.cdp_bucket,
            backfill: Backfill::new(base.db.clone(), base.sqs, &settings.jobs_queue_url, outbox),
            db: base.db,
            limits: Limits {
                chunk_rows: settings
                    .cdp_chunk_rows
                    .unwrap_or(defaults.chunk_rows)
                    .max(1),
                max_records: settings.cdp_max_records.unwrap_or(defaults.max_records),
                lease_seconds: settings.cdp_lease_seconds.unwrap_or(defaults.lease_seconds),
            },
            concurrency: settings.cdp_concurrency.unwrap_or(2).max(1),
        })
    }
}

/// The handler: one SQS batch in, the messages to retry out.
pub async fn handle(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    let (response, _summary) =
        sqs_batch::process(event, deps.concurrency, decode, |job| run(job, deps)).await;
    response
}

/// One advertiser's months run one after another; advertisers run side by side.
fn decode(message: &SqsMessage) -> Result<Decoded<Job>, WorkerError> {
    let body = message
        .body
        .as_deref()
        .ok_or_else(|| WorkerError::missing("message has no body"))?;
    let job = Job::parse(body)?;
    Ok(Decoded {
        group: job.advertiser_id.to_string(),
        item: job,
    })
}

/// What a month's run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub dataset: Dataset,
    /// `None`: the month's raw events are no longer kept (`not_retained`).
    pub key: Option<String>,
    pub records: u64,
    pub bytes: u64,
    pub sha256: Option<String>,
}

#[instrument(skip_all, fields(advertiser_id = job.advertiser_id, month = %job.month))]
async fn run(job: Job, deps: &Deps) -> Result<(), WorkerError> {
    let claimed = sqlx::query_file_scalar!(
        "sql/claim.sql",
        job.advertiser_id,
        job.month,
        job.token,
        f64::from(deps.limits.lease_seconds),
    )
    .fetch_optional(&deps.db)
    .await
    .map_err(db::classify)?;
    let Some(retry_count) = claimed else {
        info!("not queued under this token (a duplicate, or the month moved on): nothing to do");
        return Ok(());
    };

    let mut failed_records = 0;
    match export_month(&job, deps, &mut failed_records).await {
        Ok(exports) => {
            let processed: u64 = exports.iter().map(|e| e.records).sum();
            let completed =
                record_completed(&job, deps, &exports, processed, failed_records).await?;
            if completed {
                info!(processed, failed_records, "month completed");
            } else {
                warn!("month no longer running under this token (failed as stale meanwhile)");
            }
        }
        Err(err) => {
            warn!(error = %err, retryable = err.is_retryable(), "month failed");
            deps.backfill
                .record_failures(&[Failure {
                    advertiser_id: job.advertiser_id,
                    month: job.month,
                    token: job.token,
                    retry_count,
                    error: err.to_string(),
                }])
                .await?;
        }
    }
    // The next month (or the retry, delayed to its time) goes out now; if that fails, the
    // orchestrator's next tick does it.
    if let Err(err) = deps
        .backfill
        .advance(Some(&[job.advertiser_id]), false)
        .await
    {
        warn!(error = %err, "advertiser not advanced; the next tick will");
    }
    Ok(())
}

/// Writes both datasets of the month and returns what was written. `failed_records` counts
/// the rows that could not be facts.
pub async fn export_month(
    job: &Job,
    deps: &Deps,
    failed_records: &mut u64,
) -> Result<Vec<Export>, WorkerError> {
    let today = kst_date(chrono::Utc::now());
    let (first, end) = finished_days(job.month, today).ok_or_else(|| {
        WorkerError::out_of_range(format_args!(
            "month {} has no finished day on {today}",
            job.month
        ))
    })?;
    let mut budget = deps.limits.max_records;
    let performance =
        write_performance(job, deps, (first, end), &mut budget, failed_records).await?;
    let audience_key = object_key(job.advertiser_id, job.month, Dataset::Audience);
    let audience = if audience_retained(job.month, today) {
        write_audience(job, deps, (first, end), &mut budget, failed_records).await?
    } else {
        // A month written while its events were kept and run again after they went: the old
        // file must not stand beside a summary that says `not_retained`. (Only then: on the
        // versioned bucket every delete leaves a marker.)
        let written =
            sqlx::query_file_scalar!("sql/audience_written.sql", job.advertiser_id, job.month)
                .fetch_one(&deps.db)
                .await
                .map_err(db::classify)?;
        if written {
            deps.s3
                .delete_object()
                .bucket(&deps.bucket)
                .key(&audience_key)
                .send()
                .await
                .map_err(|err| s3_error(err, "delete an audience file no longer retained"))?;
        }
        Export {
            dataset: Dataset::Audience,
            key: None,
            records: 0,
            bytes: 0,
            sha256: None,
        }
    };
    Ok(vec![performance, audience])
}

async fn write_performance(
    job: &Job,
    deps: &Deps,
    (first, end): (NaiveDate, NaiveDate),
    budget: &mut u64,
    failed_records: &mut u64,
) -> Result<Export, WorkerError> {
    let temp = temp_path(job, Dataset::Performance);
    let _remove = TempFile(temp.clone());
    let (sender, writer) = columns::spawn::<PerformanceChunk>(columns::PERFORMANCE_SCHEMA, &temp);
    let mut conn = deps.db.acquire().await.map_err(db::classify)?;
    let mut rows = sqlx::query_file!("sql/performance_facts.sql", job.advertiser_id, first, end)
        .fetch(&mut *conn);
    let mut chunk = PerformanceChunk::default();
    let read = async {
        while let Some(row) = rows.try_next().await.map_err(db::classify)? {
            let counts = DailyCounts {
                impressions: row.impressions,
                clicks: row.clicks,
                conversions: row.conversions,
                cost_micros: row.cost_micros,
            };
            if let Some(flaw) = counts.flaw() {
                *failed_records += 1;
                warn!(campaign_id = row.campaign_id, day = %row.stat_date, flaw, "campaign-day left out");
                continue;
            }
            take_one(budget)?;
            chunk.push(row.campaign_id, row.stat_date, &counts);
            pass_full(&sender, &mut chunk, deps.limits.chunk_rows).await?;
        }
        pass_rest(&sender, chunk).await
    };
    let read: Result<(), WorkerError> = read.await;
    finish_and_upload(read, sender, writer, deps, job, Dataset::Performance).await
}

async fn write_audience(
    job: &Job,
    deps: &Deps,
    (first, end): (NaiveDate, NaiveDate),
    budget: &mut u64,
    failed_records: &mut u64,
) -> Result<Export, WorkerError> {
    let temp = temp_path(job, Dataset::Audience);
    let _remove = TempFile(temp.clone());
    let (sender, writer) = columns::spawn::<AudienceChunk>(columns::AUDIENCE_SCHEMA, &temp);
    let mut conn = deps.db.acquire().await.map_err(db::classify)?;
    let mut rows = sqlx::query_file!(
        "sql/audience_facts.sql",
        job.advertiser_id,
        kst_day_start(first),
        kst_day_start(end),
    )
    .fetch(&mut *conn);
    let mut chunk = AudienceChunk::default();
    let read = async {
        while let Some(row) = rows.try_next().await.map_err(db::classify)? {
            let counts = DailyCounts {
                impressions: row.impressions,
                clicks: row.clicks,
                conversions: row.conversions,
                cost_micros: row.cost_micros,
            };
            // The same rule as the performance rows: a device the platform cannot vouch for
            // (more clicks than impressions, say) is left out and counted, not exported.
            if let Some(flaw) = counts.flaw() {
                *failed_records += 1;
                warn!(flaw, "device left out");
                continue;
            }
            take_one(budget)?;
            chunk.push(DeviceFact {
                device_key: device_key(job.advertiser_id, &row.device_id),
                counts: &counts,
                first_seen: row.first_seen,
                last_seen: row.last_seen,
            });
            pass_full(&sender, &mut chunk, deps.limits.chunk_rows).await?;
        }
        pass_rest(&sender, chunk).await
    };
    let read: Result<(), WorkerError> = read.await;
    finish_and_upload(read, sender, writer, deps, job, Dataset::Audience).await
}

/// Counts one record against the month's limit.
fn take_one(budget: &mut u64) -> Result<(), WorkerError> {
    *budget = budget.checked_sub(1).ok_or_else(|| {
        WorkerError::out_of_range("the month has more records than CDP_MAX_RECORDS allows")
    })?;
    Ok(())
}

/// Hands a full chunk to the writer.
async fn pass_full<C: Chunk + Default>(
    sender: &mpsc::Sender<C>,
    chunk: &mut C,
    chunk_rows: usize,
) -> Result<(), WorkerError> {
    if chunk.rows() >= chunk_rows {
        pass_rest(sender, std::mem::take(chunk)).await?;
    }
    Ok(())
}

async fn pass_rest<C: Chunk>(sender: &mpsc::Sender<C>, chunk: C) -> Result<(), WorkerError> {
    sender
        .send(chunk)
        .await
        .map_err(|_| WorkerError::retryable(anyhow::anyhow!("the Parquet writer stopped")))
}

/// Ends a file: the writer finishes once the sender is gone; then the read's outcome decides
/// whether it is uploaded.
async fn finish_and_upload<C: Chunk>(
    read: Result<(), WorkerError>,
    sender: mpsc::Sender<C>,
    writer: tokio::task::JoinHandle<anyhow::Result<Written>>,
    deps: &Deps,
    job: &Job,
    dataset: Dataset,
) -> Result<Export, WorkerError> {
    drop(sender);
    let written = writer
        .await
        .map_err(|err| WorkerError::retryable(anyhow::Error::new(err).context("Parquet writer")))?
        .map_err(|err| WorkerError::retryable(err.context("write Parquet")));
    read?;
    upload(deps, job, dataset, &written?).await
}

fn temp_path(job: &Job, dataset: Dataset) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "cdp-{}-{}-{}-{}.parquet",
        job.advertiser_id,
        job.month,
        dataset.as_str(),
        job.token
    ))
}

async fn upload(
    deps: &Deps,
    job: &Job,
    dataset: Dataset,
    written: &Written,
) -> Result<Export, WorkerError> {
    let key = object_key(job.advertiser_id, job.month, dataset);
    let body = ByteStream::from_path(Path::new(&written.path))
        .await
        .map_err(|err| WorkerError::retryable(anyhow::Error::new(err).context("read Parquet")))?;
    deps.s3
        .put_object()
        .bucket(&deps.bucket)
        .key(&key)
        .content_type("application/vnd.apache.parquet")
        .metadata("sha256", &written.sha256)
        .metadata("records", written.records.to_string())
        .body(body)
        .send()
        .await
        .map_err(|err| s3_error(err, "write a CDP file"))?;
    Ok(Export {
        dataset,
        key: Some(key),
        records: written.records,
        bytes: written.bytes,
        sha256: Some(written.sha256.clone()),
    })
}

fn s3_error<E>(err: E, what: &'static str) -> WorkerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    WorkerError::retryable(anyhow::Error::new(err).context(what))
}

async fn record_completed(
    job: &Job,
    deps: &Deps,
    exports: &[Export],
    processed: u64,
    failed: u64,
) -> Result<bool, WorkerError> {
    let datasets: Vec<&str> = exports.iter().map(|e| e.dataset.as_str()).collect();
    let statuses: Vec<&str> = exports
        .iter()
        .map(|e| {
            if e.key.is_some() {
                "written"
            } else {
                "not_retained"
            }
        })
        .collect();
    let keys: Vec<Option<String>> = exports.iter().map(|e| e.key.clone()).collect();
    let records: Vec<i64> = exports.iter().map(|e| to_i64(e.records)).collect();
    let bytes: Vec<i64> = exports.iter().map(|e| to_i64(e.bytes)).collect();
    let sums: Vec<Option<String>> = exports.iter().map(|e| e.sha256.clone()).collect();
    sqlx::query_file_scalar!(
        "sql/complete.sql",
        job.advertiser_id,
        job.month,
        job.token,
        to_i64(processed),
        to_i64(failed),
        &datasets as &[&str],
        &statuses as &[&str],
        &keys as &[Option<String>],
        &records,
        &bytes,
        &sums as &[Option<String>],
    )
    .fetch_one(&deps.db)
    .await
    .map_err(db::classify)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
