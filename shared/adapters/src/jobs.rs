//! What every scheduled job does around its own work: read the input, and when done, report the
//! run: a `job_runs` row, EMF metrics and one summary message to the operators' SNS topic.

use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use domain::WorkerError;
use domain::schedule::JobInput;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::info;
use uuid::Uuid;

use crate::emf::{Metrics, Unit};

/// One run of a job, from its input to its report.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub job: &'static str,
    pub target_date: NaiveDate,
    pub dry_run: bool,
    /// The admin API's execution this run is for.
    pub execution_id: Option<Uuid>,
    started_at: DateTime<Utc>,
    started: Instant,
}

impl JobRun {
    /// Reads the invocation payload; bad input is a permanent error with its reason.
    fn start(job: &'static str, payload: Value) -> Result<Self, WorkerError> {
        let input = JobInput::parse(payload)?;
        let started_at = Utc::now();
        let run = Self {
            job,
            target_date: input.target_date(started_at)?,
            dry_run: input.dry_run,
            execution_id: input.execution_id,
            started_at,
            started: Instant::now(),
        };
        info!(job, target_date = %run.target_date, dry_run = run.dry_run, scheduled_time = ?input.scheduled_time, "job started");
        Ok(run)
    }

    /// A scheduled job's whole invocation: reads `payload` (bad input is refused before any
    /// work), runs `work` for it, and records a failure (see [`Self::recording_failure`]).
    pub async fn execute<Work>(
        job: &'static str,
        payload: Value,
        reporter: &Reporter,
        work: impl FnOnce(Self) -> Work,
    ) -> Result<Value, WorkerError>
    where
        Work: Future<Output = Result<Value, WorkerError>>,
    {
        let run = Self::start(job, payload)?;
        run.clone().recording_failure(reporter, work(run)).await
    }

    /// A run of a job that reads its own input (the CDP orchestrator's tick), for `target_date`,
    /// for the admin API's `execution_id` if it asked.
    pub fn begin(job: &'static str, target_date: NaiveDate, execution_id: Option<Uuid>) -> Self {
        Self {
            job,
            target_date,
            dry_run: false,
            execution_id,
            started_at: Utc::now(),
            started: Instant::now(),
        }
    }

    /// Awaits the run's `work` and, when it fails, records the failure (`job_runs.error`) before
    /// handing the error back, so the runs the admin API lists and counts include failed ones.
    pub async fn recording_failure(
        self,
        reporter: &Reporter,
        work: impl Future<Output = Result<Value, WorkerError>>,
    ) -> Result<Value, WorkerError> {
        let result = work.await;
        if let Err(err) = &result {
            let error: String = domain::text::storable(&format!("{}: {err}", err.kind()))
                .chars()
                .take(MAX_ERROR_CHARS)
                .collect();
            let summary = json!({
                "type": "job_failure",
                "job": self.job,
                "target_date": self.target_date,
                "dry_run": self.dry_run,
                "duration_ms": self.started.elapsed().as_millis(),
                "retryable": err.is_retryable(),
            });
            let recorded = sqlx::query_file!(
                "sql/job_failure.sql",
                self.job,
                self.target_date,
                self.dry_run,
                self.started_at,
                summary,
                self.execution_id,
                error,
            )
            .execute(&reporter.db)
            .await;
            if let Err(record_err) = recorded {
                tracing::warn!(job = self.job, error = %record_err, "the failed run could not be recorded");
            }
        }
        result
    }

    /// Records the run, emits its metrics (counts, and the duration) and publishes its summary
    /// to the operators. Returns the summary, which is also the invocation's result.
    pub async fn report(
        self,
        reporter: &Reporter,
        counts: &[(&str, i64)],
        details: Value,
    ) -> Result<Value, WorkerError> {
        let (job, target_date, dry_run) = (self.job, self.target_date, self.dry_run);
        let summary = self.record(reporter, counts, details).await?;
        let subject = format!(
            "{job}{} for {target_date}",
            if dry_run { " (dry run)" } else { "" },
        );
        reporter
            .sns
            .publish()
            .topic_arn(&reporter.topic_arn)
            .subject(subject)
            .message(summary.to_string())
            .send()
            .await
            .map_err(|err| {
                WorkerError::retryable(
                    anyhow::Error::new(err).context("publish the job summary to operators"),
                )
            })?;
        Ok(summary)
    }

    /// Records the run and emits its metrics, without telling the operators (a job that runs
    /// every few minutes). Returns the summary.
    pub async fn record(
        self,
        reporter: &Reporter,
        counts: &[(&str, i64)],
        details: Value,
    ) -> Result<Value, WorkerError> {
        let duration_ms = self.started.elapsed().as_millis();
        let mut summary = json!({
            "type": "job_summary",
            "job": self.job,
            "target_date": self.target_date,
            "dry_run": self.dry_run,
            "duration_ms": duration_ms,
        });
        for (name, value) in counts {
            summary[*name] = json!(value);
        }
        summary["details"] = details;

        sqlx::query_file!(
            "sql/job_run.sql",
            self.job,
            self.target_date,
            self.dry_run,
            self.started_at,
            summary,
            self.execution_id,
        )
        .execute(&reporter.db)
        .await
        .map_err(crate::db::classify)?;

        let mut metrics =
            Metrics::for_function(crate::telemetry::function_name()).dimension("Job", self.job);
        metrics.put("DurationMs", duration_ms as f64, Unit::Milliseconds);
        for (name, value) in counts {
            metrics.put(metric_name(name), *value as f64, Unit::Count);
        }
        metrics.emit();
        info!(job = self.job, target_date = %self.target_date, duration_ms, summary = %summary, "job finished");
        Ok(summary)
    }
}

/// The longest error a failed run records (the column's check).
const MAX_ERROR_CHARS: usize = 500;

/// Where runs are recorded and announced; built once per cold start.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub db: PgPool,
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
}

impl Reporter {
    /// The job's database pool (lazily connected) and the operators' topic.
    pub async fn build(
        database: &crate::config::DatabaseConfig,
        operator_alerts_topic_arn: &str,
        sdk: &aws_config::SdkConfig,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            db: crate::db::pool(database, sdk).await?,
            sns: crate::aws::sns(sdk),
            topic_arn: operator_alerts_topic_arn.to_owned(),
        })
    }
}

/// `rows_rolled_up` → `RowsRolledUp`, the CloudWatch metric naming convention.
pub fn metric_name(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_become_pascal_case_metric_names() {
        assert_eq!(metric_name("rows_rolled_up"), "RowsRolledUp");
        assert_eq!(metric_name("reviews"), "Reviews");
    }

    #[test]
    fn bad_input_is_refused_before_anything_runs() {
        let err = JobRun::start("daily-rollup", json!({"date": "yesterday"})).expect_err("bad");
        assert!(!err.is_retryable());
        let run = JobRun::start(
            "daily-rollup",
            json!({"date": "2026-11-20", "dry_run": true}),
        )
        .expect("good");
        assert_eq!(run.target_date.to_string(), "2026-11-20");
        assert!(run.dry_run);
    }
}
