//! cdp-orchestrator (SPEC §3, issue 17): the CDP backfill's two schedules, in Asia/Seoul.
//!
//! - `{"task": "tick"}`, every 5 minutes: every active advertiser is advanced
//!   (`adapters::backfill::Backfill::advance`): a NEW advertiser gets its 24 months and its
//!   oldest pending month queued, one at a time; a finished one becomes EXISTING; an EXISTING
//!   one gets its current month queued when its data changed; a failed month is queued again
//!   when its backoff ends; an exhausted one deactivates its advertiser and tells operators.
//! - `{"task": "clean_up"}`, every 10 minutes: months RUNNING for more than 30 minutes are
//!   failed as stale (a retry counted), months QUEUED for more than 4 hours (their message
//!   lost) are PENDING again, and their advertisers are advanced.
//!
//! Work goes out as jobs-queue messages to cdp-worker; the database is guarded by the worker's
//! SQS `MaximumConcurrency`, not by this function. Each run is recorded in `job_runs` with
//! its counts as metrics; operators hear only of deactivations (a summary every 5 minutes
//! would be noise).

use adapters::backfill::Backfill;
use adapters::bootstrap::ScheduledJob;
use adapters::jobs::{JobRun, Reporter};
use adapters::outbox::Outbox;
use adapters::{aws, config};
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::calendar::kst_date;
use domain::schedule::parse_input;
use serde::Deserialize;
use serde_json::{Value, json};

pub const JOB: &str = "cdp-orchestrator";
pub const CLEAN_UP_JOB: &str = "cdp-stale-cleanup";

/// cdp-orchestrator's own settings.
#[derive(Deserialize)]
struct Settings {
    jobs_queue_url: String,
    operator_alerts_topic_arn: String,
}

pub struct Deps {
    pub reporter: Reporter,
    pub backfill: Backfill,
}

impl Deps {
    /// The scheduled job's base, `JOBS_QUEUE_URL` and `OPERATOR_ALERTS_TOPIC_ARN`.
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let base = ScheduledJob::from_env().await?;
        let db = base.reporter.db.clone();
        let outbox = Outbox::new(
            db.clone(),
            aws::sns(&base.sdk),
            adapters::backfill::PRODUCER,
            settings.operator_alerts_topic_arn,
        );
        Ok(Self {
            backfill: Backfill::new(db, aws::sqs(&base.sdk), &settings.jobs_queue_url, outbox),
            reporter: base.reporter,
        })
    }
}

/// What a schedule asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    #[default]
    Tick,
    CleanUp,
}

/// The schedule's input: `{"task": …, "scheduled_time": …}`; `null` or `{}` is a tick.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    task: Task,
    /// Logged only: a tick works on the state as it is when it runs.
    #[serde(default)]
    scheduled_time: Option<DateTime<Utc>>,
    /// The admin API's execution this run is for.
    #[serde(default)]
    execution_id: Option<uuid::Uuid>,
}

fn parse(payload: Value) -> Result<Input, WorkerError> {
    parse_input(
        payload,
        "input",
        r#"{"task": "tick" | "clean_up", "scheduled_time": "RFC 3339", "execution_id": "UUID"}"#,
    )
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    let input = parse(payload)?;
    tracing::info!(task = ?input.task, scheduled_time = ?input.scheduled_time, "run started");
    match input.task {
        Task::Tick => {
            let run = JobRun::begin(JOB, kst_date(Utc::now()), input.execution_id);
            run.clone()
                .recording_failure(&deps.reporter, tick(run, deps))
                .await
        }
        Task::CleanUp => {
            let run = JobRun::begin(CLEAN_UP_JOB, kst_date(Utc::now()), input.execution_id);
            run.clone()
                .recording_failure(&deps.reporter, clean_up(run, deps))
                .await
        }
    }
}

async fn tick(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let advanced = deps.backfill.advance(None, false).await?;
    // Deactivation notices a failed publish left behind go out now.
    deps.backfill.flush_notifications().await;
    let counts = [
        ("started", advanced.started),
        ("queued", advanced.queued),
        ("waiting", advanced.waiting),
        ("idle", advanced.idle),
        ("completed", advanced.completed),
        ("deactivated", advanced.deactivated),
        ("lost_races", advanced.lost_races),
    ]
    .map(|(name, n)| (name, i64::try_from(n).unwrap_or(i64::MAX)));
    run.record(&deps.reporter, &counts, json!({})).await
}

async fn clean_up(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let cleaned = deps.backfill.clean_up().await?;
    let counts = [("stale", cleaned.stale), ("lost", cleaned.lost)]
        .map(|(name, n)| (name, i64::try_from(n).unwrap_or(i64::MAX)));
    run.record(&deps.reporter, &counts, json!({})).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedules_inputs_and_nothing_else() {
        assert_eq!(parse(Value::Null).expect("null").task, Task::Tick);
        assert_eq!(parse(json!({})).expect("{}").task, Task::Tick);
        let clean_up = parse(json!({"task": "clean_up", "scheduled_time": "2026-11-23T10:00:00Z"}))
            .expect("clean up");
        assert_eq!(clean_up.task, Task::CleanUp);
        for bad in [json!([]), json!({"task": "purge"}), json!({"tsk": "tick"})] {
            assert!(!parse(bad).expect_err("refused").is_retryable());
        }
    }

    #[test]
    fn the_counts_are_the_metrics_the_dashboard_and_alarms_name() {
        for (count, metric) in [
            ("queued", "Queued"),
            ("waiting", "Waiting"),
            ("deactivated", "Deactivated"),
            ("stale", "Stale"),
        ] {
            assert_eq!(adapters::jobs::metric_name(count), metric);
        }
    }
}
