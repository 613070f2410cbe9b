//! The CDP backfill's moving parts that more than one function needs (issue 17): advancing
//! advertisers (the orchestrator's tick, the worker after each month, and an operator's
//! trigger), recording failed months, cleaning up stale ones, and the manual controls the
//! admin API calls. The rules are `domain::backfill`; this reads the states, asks the rules,
//! and writes what they say.
//!
//! A month goes out as one message on the jobs queue, under a token the claim issues
//! (`PENDING → QUEUED`). Claims check that the month is still as it was read, so two runs at
//! once queue it once. A message that cannot be sent gives its month back (`PENDING`).

use std::collections::HashMap;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use domain::WorkerError;
use domain::backfill::{
    self, Backfill as Progress, Existing, Job, MAX_RETRIES, Month, Plan, State, bounded_error,
    current_month, queue_delay,
};
use domain::calendar::{add_months, kst_date};
use domain::notice;
use futures::StreamExt as _;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::db::classify;
use crate::emf::{Metrics, Unit};
use crate::outbox::Outbox;

/// The outbox producer of the backfill's notifications (either function may flush them).
pub const PRODUCER: &str = "cdp-backfill";
/// How far ahead a tick queues a failed month's next attempt, with an SQS delay until it is
/// due: one tick period, so a retry happens at its time, not at the tick after it.
pub const LOOKAHEAD: TimeDelta = TimeDelta::minutes(5);
/// The `Job` dimension of the metrics every advance emits (`Queued`, `Deactivated`).
pub const METRICS_JOB: &str = "cdp-backfill";
/// SQS takes at most ten messages per `SendMessageBatch`.
const SQS_BATCH: usize = 10;
/// `SendMessageBatch` calls in flight at once.
const SEND_CONCURRENCY: usize = 16;

/// What one advance did, advertiser by advertiser: the run's summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Advanced {
    /// NEW advertisers whose 24 months were created.
    pub started: usize,
    /// Months queued (messages sent).
    pub queued: usize,
    /// Advertisers with a month in flight.
    pub waiting: usize,
    /// Advertisers with nothing to do now.
    pub idle: usize,
    /// Advertisers whose backfill completed (now EXISTING).
    pub completed: usize,
    /// Advertisers deactivated because a month exhausted its retries.
    pub deactivated: usize,
    /// Months read in a state the tick no longer found (another run took them).
    pub lost_races: usize,
}

/// What a clean-up did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CleanedUp {
    /// RUNNING months failed as stale.
    pub stale: usize,
    /// QUEUED months whose message was lost, PENDING again.
    pub lost: usize,
}

/// A month that failed under `token`, to be recorded with its retry.
#[derive(Debug, Clone)]
pub struct Failure {
    pub advertiser_id: i64,
    pub month: NaiveDate,
    pub token: Uuid,
    /// Its retry count before this failure.
    pub retry_count: i32,
    pub error: String,
}

/// A month to queue, as it was read.
struct Candidate {
    advertiser_id: i64,
    month: NaiveDate,
    state: State,
    token: Option<Uuid>,
}

/// The backfill's database, jobs queue and notifications.
#[derive(Clone)]
pub struct Backfill {
    db: PgPool,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    outbox: Outbox,
}

impl Backfill {
    /// `outbox` publishes to the operators' topic.
    pub fn new(db: PgPool, sqs: aws_sdk_sqs::Client, queue_url: &str, outbox: Outbox) -> Self {
        Self {
            db,
            sqs,
            queue_url: queue_url.to_owned(),
            outbox,
        }
    }

    /// Advances every active advertiser (`only: None`, the orchestrator's tick) or those named:
    /// NEW ones get their months and their next month queued, finished ones become EXISTING,
    /// EXISTING ones get their current month queued when its data changed, exhausted ones are
    /// deactivated and the operators told. `requested`: an operator asked, so a failed month
    /// goes now (no backoff) and an EXISTING month runs even if its data did not change.
    pub async fn advance(
        &self,
        only: Option<&[i64]>,
        requested: bool,
    ) -> Result<Advanced, WorkerError> {
        let (mut summary, completed) = self.advance_once(only, requested).await?;
        if !completed.is_empty() {
            // Now EXISTING: their current month goes out in the same run, not the next.
            let (existing, _) = self.advance_once(Some(&completed), requested).await?;
            summary.queued += existing.queued;
            summary.waiting += existing.waiting;
            summary.idle += existing.idle;
            summary.deactivated += existing.deactivated;
            summary.lost_races += existing.lost_races;
        }
        // Most months are queued, and most deactivations happen, in the worker right after a
        // month: every advance counts, whichever function runs it.
        let mut metrics =
            Metrics::for_function(crate::telemetry::function_name()).dimension("Job", METRICS_JOB);
        metrics.put("Queued", summary.queued as f64, Unit::Count);
        metrics.put("Deactivated", summary.deactivated as f64, Unit::Count);
        metrics.emit();
        Ok(summary)
    }

    /// One pass of [`Backfill::advance`]; also returns the advertisers that became EXISTING.
    async fn advance_once(
        &self,
        only: Option<&[i64]>,
        requested: bool,
    ) -> Result<(Advanced, Vec<i64>), WorkerError> {
        let now = Utc::now();
        let today = kst_date(now);
        let due_by = if requested {
            DateTime::<Utc>::MAX_UTC
        } else {
            now + LOOKAHEAD
        };
        let mut summary = Advanced::default();
        let mut starts = Vec::new();
        let mut candidates = Vec::new();
        let mut completes = Vec::new();
        let mut deactivations = Vec::new();
        let mut new_current = Vec::new();

        let backfill_months = backfill::backfill_months(today);
        let new = sqlx::query_file!("sql/backfill/new_advertisers.sql", only)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        for row in new {
            let frontier = match (row.month, row.state.as_deref().and_then(State::parse)) {
                (Some(month), Some(state)) => Some((
                    month_read(month, state, row.retry_count, row.next_attempt_at),
                    row.claim_token,
                )),
                _ => None,
            };
            let progress = Progress {
                started: row.started,
                frontier: frontier.as_ref().map(|(month, _)| month.clone()),
            };
            match backfill::plan_new(&progress, today, due_by) {
                Plan::Start(months) => {
                    if let Some(&first) = months.first() {
                        starts.push(row.advertiser_id);
                        candidates.push(Candidate {
                            advertiser_id: row.advertiser_id,
                            month: first,
                            state: State::Pending,
                            token: None,
                        });
                    }
                }
                Plan::Queue(month) => {
                    let (read, token) = frontier.unzip();
                    candidates.push(Candidate {
                        advertiser_id: row.advertiser_id,
                        month,
                        state: read.map_or(State::Pending, |m| m.state),
                        token: token.flatten(),
                    });
                }
                Plan::Wait => summary.waiting += 1,
                Plan::Idle => summary.idle += 1,
                Plan::Complete => completes.push(row.advertiser_id),
                Plan::Deactivate(month) => deactivations.push((row.advertiser_id, month)),
            }
        }

        let current = current_month(today);
        let existing = sqlx::query_file!(
            "sql/backfill/existing_advertisers.sql",
            only,
            current,
            add_months(current, 1),
        )
        .fetch_all(&self.db)
        .await
        .map_err(classify)?;
        for row in existing {
            let state = row.state.as_deref().and_then(State::parse);
            let frontier = match (
                row.frontier_month,
                row.frontier_state.as_deref().and_then(State::parse),
            ) {
                (Some(month), Some(state)) => Some(month_read(
                    month,
                    state,
                    row.frontier_retry_count,
                    row.frontier_next_attempt_at,
                )),
                _ => None,
            };
            let read = Existing {
                frontier: frontier.clone(),
                current: state
                    .map(|state| month_read(current, state, row.retry_count, row.next_attempt_at)),
                ran_from: row.started_at,
                data_changed_at: row.data_changed_at,
                requested,
            };
            match backfill::plan_existing(&read, today, due_by) {
                Plan::Queue(month) => match (&frontier, state) {
                    (Some(f), _) if f.month == month => candidates.push(Candidate {
                        advertiser_id: row.advertiser_id,
                        month,
                        state: f.state,
                        token: row.frontier_claim_token,
                    }),
                    // The current month does not exist yet: it is created below, with any
                    // months missing before it, and the oldest of them queued.
                    (_, None) => new_current.push(row.advertiser_id),
                    (_, Some(state)) => candidates.push(Candidate {
                        advertiser_id: row.advertiser_id,
                        month,
                        state,
                        token: row.claim_token,
                    }),
                },
                Plan::Wait => summary.waiting += 1,
                Plan::Deactivate(month) => deactivations.push((row.advertiser_id, month)),
                Plan::Idle | Plan::Start(_) | Plan::Complete => summary.idle += 1,
            }
        }

        if !starts.is_empty() {
            let first = backfill_months.first().copied().unwrap_or(current);
            let started = sqlx::query_file_scalar!(
                "sql/backfill/start.sql",
                &starts,
                first,
                &backfill_months,
            )
            .fetch_one(&self.db)
            .await
            .map_err(classify)?;
            summary.started = usize::try_from(started).unwrap_or(0);
        }
        if !new_current.is_empty() {
            let created =
                sqlx::query_file!("sql/backfill/ensure_months.sql", &new_current, current)
                    .fetch_all(&self.db)
                    .await
                    .map_err(classify)?;
            let mut oldest: HashMap<i64, NaiveDate> = HashMap::new();
            for row in created {
                let month = oldest.entry(row.advertiser_id).or_insert(row.month);
                *month = (*month).min(row.month);
            }
            candidates.extend(oldest.into_iter().map(|(advertiser_id, month)| Candidate {
                advertiser_id,
                month,
                state: State::Pending,
                token: None,
            }));
        }
        let mut completed = Vec::new();
        if !completes.is_empty() {
            completed = sqlx::query_file_scalar!("sql/backfill/complete.sql", &completes)
                .fetch_all(&self.db)
                .await
                .map_err(classify)?;
            summary.completed = completed.len();
        }
        for (advertiser_id, month) in deactivations {
            if self.deactivate_exhausted(advertiser_id, month).await? {
                summary.deactivated += 1;
            }
        }
        if summary.deactivated > 0 {
            self.flush_notifications().await;
        }

        let queued = self.claim(&candidates).await?;
        summary.lost_races = candidates.len() - queued.len();
        summary.queued = self.send(&queued, now, requested).await?;
        Ok((summary, completed))
    }

    /// Claims the candidates that are still as they were read; returns the queued months.
    async fn claim(&self, candidates: &[Candidate]) -> Result<Vec<Queued>, WorkerError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = candidates.iter().map(|c| c.advertiser_id).collect();
        let months: Vec<NaiveDate> = candidates.iter().map(|c| c.month).collect();
        let states: Vec<&str> = candidates.iter().map(|c| c.state.as_str()).collect();
        let tokens: Vec<Option<Uuid>> = candidates.iter().map(|c| c.token).collect();
        let rows = sqlx::query_file!(
            "sql/backfill/claim.sql",
            &ids,
            &months,
            &states as &[&str],
            &tokens as &[Option<Uuid>],
        )
        .fetch_all(&self.db)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|row| Queued {
                job: Job {
                    advertiser_id: row.advertiser_id,
                    month: row.month,
                    token: row.claim_token,
                },
                next_attempt_at: row.next_attempt_at,
            })
            .collect())
    }

    /// Sends one jobs message per queued month, ten per `SendMessageBatch`; what could not be
    /// sent is given back. Returns how many were sent; a failed send is retryable (after the
    /// give-back), so the run shows it.
    async fn send(
        &self,
        queued: &[Queued],
        now: DateTime<Utc>,
        requested: bool,
    ) -> Result<usize, WorkerError> {
        // The futures are made first: a stream that maps with a closure borrowing `self` would
        // make this future's `Send` depend on a lifetime the compiler cannot generalise.
        let batches: Vec<_> = queued
            .chunks(SQS_BATCH)
            .map(|batch| self.send_batch(batch, now, requested))
            .collect();
        let results: Vec<Vec<&Queued>> = futures::stream::iter(batches)
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        let unsent: Vec<&Queued> = results.into_iter().flatten().collect();
        if unsent.is_empty() {
            return Ok(queued.len());
        }
        let ids: Vec<i64> = unsent.iter().map(|q| q.job.advertiser_id).collect();
        let months: Vec<NaiveDate> = unsent.iter().map(|q| q.job.month).collect();
        let tokens: Vec<Uuid> = unsent.iter().map(|q| q.job.token).collect();
        sqlx::query_file!("sql/backfill/give_back.sql", &ids, &months, &tokens)
            .execute(&self.db)
            .await
            .map_err(classify)?;
        Err(WorkerError::retryable(anyhow::anyhow!(
            "{} of {} jobs messages not sent (their months are PENDING again)",
            unsent.len(),
            queued.len()
        )))
    }

    /// One `SendMessageBatch`; returns the months it did not send.
    async fn send_batch<'a>(
        &self,
        batch: &'a [Queued],
        now: DateTime<Utc>,
        requested: bool,
    ) -> Vec<&'a Queued> {
        let mut entries = Vec::with_capacity(batch.len());
        for (index, queued) in batch.iter().enumerate() {
            let delay = if requested {
                0
            } else {
                queue_delay(queued.next_attempt_at, now)
            };
            let body = match serde_json::to_string(&queued.job) {
                Ok(body) => body,
                Err(err) => {
                    error!(error = %err, "encode a jobs message");
                    continue;
                }
            };
            match SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(body)
                .delay_seconds(i32::try_from(delay).unwrap_or(0))
                .build()
            {
                Ok(entry) => entries.push(entry),
                Err(err) => error!(error = %err, "build a jobs message"),
            }
        }
        let sent = self
            .sqs
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(output) => {
                let failed: HashMap<String, String> = output
                    .failed
                    .into_iter()
                    .map(|f| (f.id, f.message.unwrap_or(f.code)))
                    .collect();
                let sent_ids: std::collections::HashSet<String> =
                    output.successful.into_iter().map(|s| s.id).collect();
                batch
                    .iter()
                    .enumerate()
                    .filter(|(index, queued)| {
                        let id = index.to_string();
                        if let Some(reason) = failed.get(&id) {
                            warn!(advertiser_id = queued.job.advertiser_id, month = %queued.job.month, reason, "jobs message refused");
                        }
                        !sent_ids.contains(&id)
                    })
                    .map(|(_, queued)| queued)
                    .collect()
            }
            Err(err) => {
                error!(error = %anyhow::Error::new(err), months = batch.len(), "send jobs messages");
                batch.iter().collect()
            }
        }
    }

    /// Deactivates an advertiser whose `month` exhausted its retries and tells the operators
    /// (through the outbox, in the same transaction). Returns whether it was active.
    async fn deactivate_exhausted(
        &self,
        advertiser_id: i64,
        month: NaiveDate,
    ) -> Result<bool, WorkerError> {
        let reason = format!(
            "month {} failed after {MAX_RETRIES} retries",
            backfill::month_key(month)
        );
        let mut tx = self.db.begin().await.map_err(classify)?;
        let Some(row) =
            sqlx::query_file!("sql/backfill/deactivate.sql", advertiser_id, reason, month)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?
        else {
            return Ok(false);
        };
        let notice = notice::advertiser_deactivated(
            advertiser_id,
            month,
            row.error.as_deref(),
            row.deactivated_at,
        );
        self.outbox.add(&mut tx, &[notice]).await?;
        tx.commit().await.map_err(classify)?;
        warn!(advertiser_id, month = %month, "advertiser deactivated: a month exhausted its retries");
        Ok(true)
    }

    /// Publishes what the outbox holds; what fails stays for the next run.
    pub async fn flush_notifications(&self) {
        if let Err(err) = self.outbox.flush(100).await {
            warn!(error = %err, "operator notifications left in the outbox for the next run");
        }
    }

    /// Records failed months: see [`record_failures`].
    pub async fn record_failures(&self, failures: &[Failure]) -> Result<usize, WorkerError> {
        let mut conn = self.db.acquire().await.map_err(classify)?;
        record_failures(&mut conn, failures).await
    }

    /// The clean-up: every month RUNNING for longer than [`backfill::STALE_AFTER`] (its worker
    /// died) is failed, counted as a retry; every month QUEUED for longer than
    /// [`backfill::LOST_AFTER`] (its message was lost) is PENDING again. Their advertisers are
    /// then advanced, so the retries go out at their time under new tokens.
    pub async fn clean_up(&self) -> Result<CleanedUp, WorkerError> {
        let now = Utc::now();
        let mut tx = self.db.begin().await.map_err(classify)?;
        let stale = sqlx::query_file!("sql/backfill/stale.sql", backfill::stale_before(now))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        let failures: Vec<Failure> = stale
            .iter()
            .map(|row| Failure {
                advertiser_id: row.advertiser_id,
                month: row.month,
                token: row.claim_token,
                retry_count: row.retry_count,
                error: format!(
                    "stale: running for more than {} minutes",
                    backfill::STALE_AFTER.num_minutes()
                ),
            })
            .collect();
        // The rows stay locked until the failures are recorded: a worker finishing one of them
        // meanwhile waits, then finds it FAILED and leaves it.
        let failed = record_failures(&mut tx, &failures).await?;
        let lost = sqlx::query_file_scalar!("sql/backfill/lost.sql", backfill::lost_before(now))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        let mut advertisers: Vec<i64> = failures
            .iter()
            .map(|f| f.advertiser_id)
            .chain(lost.iter().copied())
            .collect();
        advertisers.sort_unstable();
        advertisers.dedup();
        if !advertisers.is_empty() {
            warn!(
                stale = failed,
                lost = lost.len(),
                "stale and lost months cleaned up"
            );
            self.advance(Some(&advertisers), false).await?;
        }
        Ok(CleanedUp {
            stale: failed,
            lost: lost.len(),
        })
    }

    // ---------------------------------------------------------------- manual controls

    /// Adds a NEW advertiser and starts its backfill at once. Adding an id already there
    /// changes nothing (idempotent). Returns whether it was added.
    pub async fn add_advertiser(
        &self,
        advertiser_id: i64,
        name: &str,
    ) -> Result<bool, WorkerError> {
        let added =
            sqlx::query_file_scalar!("sql/backfill/add_advertiser.sql", advertiser_id, name)
                .fetch_optional(&self.db)
                .await
                .map_err(classify)?
                .is_some();
        self.advance(Some(&[advertiser_id]), false).await?;
        info!(advertiser_id, added, "advertiser added");
        Ok(added)
    }

    /// Advances one advertiser now, as if an operator could not wait for the tick: a failed
    /// month is queued without its backoff, an EXISTING month even if its data did not change.
    pub async fn trigger(&self, advertiser_id: i64) -> Result<Advanced, WorkerError> {
        self.advance(Some(&[advertiser_id]), true).await
    }

    /// Gives a FAILED month of an active advertiser its retries back and queues it. Returns
    /// whether it did: not for a month in another state, nor for an inactive advertiser
    /// (activate it: that revives its exhausted months).
    pub async fn retry_month(
        &self,
        advertiser_id: i64,
        month: NaiveDate,
    ) -> Result<bool, WorkerError> {
        let retried =
            sqlx::query_file_scalar!("sql/backfill/retry_month.sql", advertiser_id, month)
                .fetch_optional(&self.db)
                .await
                .map_err(classify)?
                .is_some();
        if retried {
            self.advance(Some(&[advertiser_id]), true).await?;
        }
        Ok(retried)
    }

    /// Activates an advertiser (its exhausted months get their retries back, and it is
    /// advanced at once) or deactivates it with the `reason` of the operator `by` (both kept
    /// apart, the reason cut to its 500 characters). Returns whether it exists.
    pub async fn set_active(
        &self,
        advertiser_id: i64,
        active: bool,
        reason: &str,
        by: &str,
    ) -> Result<bool, WorkerError> {
        let reason = bounded_error(reason);
        let found = sqlx::query_file_scalar!(
            "sql/backfill/set_active.sql",
            advertiser_id,
            active,
            reason,
            i32::try_from(MAX_RETRIES).unwrap_or(i32::MAX),
            by,
        )
        .fetch_one(&self.db)
        .await
        .map_err(classify)?;
        if found && active {
            self.advance(Some(&[advertiser_id]), false).await?;
        }
        Ok(found)
    }
}

/// A month as the rules read it, from its row.
fn month_read(
    month: NaiveDate,
    state: State,
    retry_count: Option<i32>,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Month {
    Month {
        month,
        state,
        retry_count: u32::try_from(retry_count.unwrap_or(0)).unwrap_or(0),
        next_attempt_at,
    }
}

/// A month claimed for a jobs message.
struct Queued {
    job: Job,
    next_attempt_at: Option<DateTime<Utc>>,
}

/// Records failed months (FAILED, the retry counted, the next attempt 1, 2, 4 minutes on, or
/// exhausted), each only under the token it ran with. Returns how many were recorded.
pub async fn record_failures(
    conn: &mut PgConnection,
    failures: &[Failure],
) -> Result<usize, WorkerError> {
    if failures.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let mut ids = Vec::new();
    let mut months = Vec::new();
    let mut tokens = Vec::new();
    let mut errors = Vec::new();
    let mut retries = Vec::new();
    let mut next = Vec::new();
    for failure in failures {
        let retry_count = u32::try_from(failure.retry_count).unwrap_or(0);
        let (count, at) = match backfill::after_failure(retry_count, now) {
            Some((count, at)) => (count, Some(at)),
            None => (MAX_RETRIES + 1, None),
        };
        ids.push(failure.advertiser_id);
        months.push(failure.month);
        tokens.push(failure.token);
        errors.push(bounded_error(&failure.error));
        retries.push(i32::try_from(count).unwrap_or(i32::MAX));
        next.push(at);
    }
    let recorded = sqlx::query_file!(
        "sql/backfill/fail.sql",
        &ids,
        &months,
        &tokens,
        &errors,
        &retries,
        &next as &[Option<DateTime<Utc>>],
    )
    .execute(&mut *conn)
    .await
    .map_err(classify)?
    .rows_affected();
    Ok(usize::try_from(recorded).unwrap_or(usize::MAX))
}
