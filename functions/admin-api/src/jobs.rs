//! The scheduled jobs (seed 002's `/api/v1/worker/tasks…`): the jobs and their latest runs,
//! runs (`job_runs`, failed ones included), one run, executing a job, an execution, statistics.

use std::sync::Arc;

use adapters::db::classify;
use adapters::http::{Params, Problem, QueryOf, json, json_body};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use domain::admin::{Execution, JOBS, execution_input};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::idempotency::{Change, perform};
use crate::{Admin, Deps, Page, Reader, paging};

/// One run of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: i64,
    pub job: String,
    pub target_date: NaiveDate,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// Succeeded or failed.
    pub succeeded: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The execution an operator asked for, if one did.
    pub execution_id: Option<Uuid>,
    /// The run's summary, as the job reported it (counts, details).
    #[schema(value_type = Object)]
    pub summary: Value,
}

macro_rules! run {
    ($row:expr) => {
        Run {
            id: $row.id,
            job: $row.job,
            target_date: $row.target_date,
            dry_run: $row.dry_run,
            started_at: $row.started_at,
            finished_at: $row.finished_at,
            duration_ms: ($row.finished_at - $row.started_at).num_milliseconds(),
            succeeded: $row.error.is_none(),
            error: $row.error,
            execution_id: $row.execution_id,
            summary: $row.summary,
        }
    };
}

/// The latest run of each of `jobs`.
pub async fn latest_runs(db: &PgPool, jobs: &[&str]) -> Result<Vec<Run>, Problem> {
    let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
    let rows = sqlx::query_file!("sql/last_runs.sql", &jobs)
        .fetch_all(db)
        .await
        .map_err(classify)?;
    Ok(rows.into_iter().map(|row| run!(row)).collect())
}

/// A scheduled job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Its name in runs and statistics.
    pub name: String,
    /// The function that runs it.
    pub function: String,
    /// Its schedule (EventBridge Scheduler, Asia/Seoul).
    pub schedule: String,
    /// Whether an execution may name a date (a finished day; yesterday without one).
    pub takes_date: bool,
    /// Whether an execution may be a dry run.
    pub takes_dry_run: bool,
    pub last_run: Option<Run>,
}

#[utoipa::path(get, path = "/admin/jobs", tag = "jobs",
    responses((status = 200, description = "Every scheduled job with its latest run", body = Vec<Job>)))]
pub async fn jobs(State(deps): State<Arc<Deps>>, _: Reader) -> Result<Response, Problem> {
    let names: Vec<&str> = JOBS.iter().map(|job| job.name).collect();
    let runs = latest_runs(&deps.db, &names).await?;
    let jobs: Vec<Job> = JOBS
        .iter()
        .map(|spec| {
            use domain::admin::JobInputKind as Kind;
            Job {
                name: spec.name.to_owned(),
                function: spec.function.to_owned(),
                schedule: spec.schedule.to_owned(),
                takes_date: !matches!(spec.input, Kind::Task(_)),
                takes_dry_run: spec.input == Kind::DateAndDryRun,
                last_run: runs.iter().find(|run| run.job == spec.name).cloned(),
            }
        })
        .collect();
    Ok(json(StatusCode::OK, &jobs))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Only this job's runs.
    #[param(max_length = 100)]
    pub job: Option<String>,
    /// Only failed (true) or succeeded (false) runs.
    pub failed: Option<bool>,
    /// Runs started at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Runs started before this instant.
    pub to: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/jobs/runs", tag = "jobs", params(RunQuery),
    responses((status = 200, description = "A page of runs, newest first", body = Page<Run>)))]
pub async fn runs(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    QueryOf(query): QueryOf<RunQuery>,
) -> Result<Response, Problem> {
    let (before, limit) = paging::<i64>(query.cursor.as_deref(), query.limit)?;
    let rows = sqlx::query_file!(
        "sql/job_runs.sql",
        before.unwrap_or(i64::MAX),
        query.job,
        query.failed,
        query.from,
        query.to,
        i64::from(limit) + 1,
    )
    .fetch_all(&deps.db)
    .await
    .map_err(classify)?;
    let items = rows.into_iter().map(|row| run!(row)).collect();
    Ok(json(
        StatusCode::OK,
        &Page::of(items, limit, |r: &Run| r.id),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    /// The run's id.
    pub run_id: i64,
}

#[utoipa::path(get, path = "/admin/jobs/runs/{run_id}", tag = "jobs", params(RunPath),
    responses((status = 200, description = "The run, with its summary", body = Run)))]
pub async fn run(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<RunPath>,
) -> Result<Response, Problem> {
    let row = sqlx::query_file!("sql/job_run.sql", path.run_id)
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?
        .ok_or_else(Problem::not_found)?;
    Ok(json(StatusCode::OK, &run!(row)))
}

/// What to run a job on.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionRequest {
    /// The day to work on (a finished day in Asia/Seoul); yesterday without one.
    pub date: Option<NaiveDate>,
    /// Report without changing anything (retention only).
    #[serde(default)]
    pub dry_run: bool,
}

/// An execution: the job was invoked with `input`; its run is recorded under `execution_id`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionState {
    pub execution_id: Uuid,
    pub job: String,
    /// The input the job was invoked with: the schedule's, with the execution's id.
    #[schema(value_type = Object)]
    pub input: Value,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// `requested` until the job recorded its run, then `succeeded` or `failed`.
    pub state: String,
    pub run_id: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job's name (see `GET /admin/jobs`).
    pub job: String,
}

#[utoipa::path(post, path = "/admin/jobs/{job}/executions", tag = "jobs",
    params(JobPath), request_body = ExecutionRequest,
    responses((status = 202, description = "Invoked asynchronously; follow the execution for its run", body = ExecutionState)))]
pub async fn execute(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    Params(path): Params<JobPath>,
    body: Bytes,
) -> Result<Response, Problem> {
    let work = async {
        let spec = domain::admin::job(&path.job).ok_or_else(Problem::not_found)?;
        // The body is required (`{}` for the schedule's own input), as the document says.
        let request: ExecutionRequest = json_body(&headers, &body)?;
        let execution_id = Uuid::new_v4();
        let input = execution_input(
            spec,
            &Execution {
                date: request.date,
                dry_run: request.dry_run,
            },
            execution_id,
        )?;
        if let Some(date) = request.date {
            domain::schedule::JobInput {
                date: Some(date),
                ..Default::default()
            }
            .target_date(Utc::now())?;
        }
        let function = deps
            .functions
            .get(spec.function)
            .ok_or_else(Problem::unavailable)?;
        let requested_at = Utc::now();
        sqlx::query_file!(
            "sql/insert_execution.sql",
            execution_id,
            spec.name,
            input,
            caller.subject,
            caller.request_id,
        )
        .execute(&deps.db)
        .await
        .map_err(classify)?;
        let invoked = deps
            .lambda
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(input.to_string()))
            .send()
            .await;
        if let Err(err) = invoked {
            tracing::error!(job = spec.name, error = %aws_sdk_lambda::error::DisplayErrorContext(&err), "the job could not be invoked");
            let forgotten = sqlx::query_file!("sql/forget_execution.sql", execution_id)
                .execute(&deps.db)
                .await;
            if let Err(err) = forgotten {
                tracing::warn!(error = %err, "an execution that was never invoked stays listed");
            }
            return Err(Problem::unavailable());
        }
        tracing::info!(job = spec.name, %execution_id, caller = %caller.subject, "job invoked");
        Ok((
            StatusCode::ACCEPTED,
            crate::to_json(ExecutionState {
                execution_id,
                job: spec.name.to_owned(),
                input,
                requested_by: caller.subject.clone(),
                requested_at,
                state: "requested".to_owned(),
                run_id: None,
                error: None,
            }),
        ))
    };
    let change = Change {
        action: "jobs.execute",
        target: format!("jobs/{}", path.job),
        body: &body,
    };
    perform(&deps, &caller, &headers, change, work).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ExecutionPath {
    /// The execution's id, as `POST /admin/jobs/{job}/executions` answered it.
    pub execution_id: Uuid,
}

#[utoipa::path(get, path = "/admin/jobs/executions/{execution_id}", tag = "jobs",
    params(ExecutionPath),
    responses((status = 200, description = "The execution and, once recorded, its run", body = ExecutionState)))]
pub async fn execution(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<ExecutionPath>,
) -> Result<Response, Problem> {
    let row = sqlx::query_file!("sql/execution.sql", path.execution_id)
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?
        .ok_or_else(Problem::not_found)?;
    let state = match (&row.run_id, &row.error) {
        (None, _) => "requested",
        (Some(_), None) => "succeeded",
        (Some(_), Some(_)) => "failed",
    };
    let execution = ExecutionState {
        execution_id: row.execution_id,
        job: row.job,
        input: row.input,
        requested_by: row.requested_by,
        requested_at: row.requested_at,
        state: state.to_owned(),
        run_id: row.run_id,
        error: row.error,
    };
    Ok(json(StatusCode::OK, &execution))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatisticsQuery {
    /// The period's start (7 days before `to` without one).
    pub from: Option<DateTime<Utc>>,
    /// The period's end (now without one).
    pub to: Option<DateTime<Utc>>,
}

/// Runs per job over a period.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Statistics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub jobs: Vec<JobStatistics>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobStatistics {
    pub job: String,
    pub runs: i64,
    pub failures: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub last_started_at: DateTime<Utc>,
}

/// The longest period statistics cover.
const MAX_PERIOD: TimeDelta = TimeDelta::days(366);

#[utoipa::path(get, path = "/admin/jobs/statistics", tag = "jobs", params(StatisticsQuery),
    responses((status = 200, description = "Runs, failures and p50/p95 duration per job", body = Statistics)))]
pub async fn statistics(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    QueryOf(query): QueryOf<StatisticsQuery>,
) -> Result<Response, Problem> {
    let to = query.to.unwrap_or_else(Utc::now);
    let from = query.from.unwrap_or(to - TimeDelta::days(7));
    if from >= to || to - from > MAX_PERIOD {
        return Err(Problem::invalid(
            "from must be before to, at most 366 days apart",
        ));
    }
    let rows = sqlx::query_file!("sql/job_statistics.sql", from, to)
        .fetch_all(&deps.db)
        .await
        .map_err(classify)?;
    let jobs = rows
        .into_iter()
        .map(|row| JobStatistics {
            job: row.job,
            runs: row.runs,
            failures: row.failures,
            p50_ms: (row.p50_ms * 10.0).round() / 10.0,
            p95_ms: (row.p95_ms * 10.0).round() / 10.0,
            last_started_at: row.last_started_at,
        })
        .collect();
    Ok(json(StatusCode::OK, &Statistics { from, to, jobs }))
}
