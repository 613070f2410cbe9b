//! admin-api: the operators' admin API behind the HTTP API's JWT authorizer (issue 18; seeds
//! 001's `/api/v2/batch/…` and 002's `/api/v1/worker/…`), under `/admin`:
//!
//! - **backfill**: the CDP backfill's status, an advertiser's progress and months, the months
//!   in flight, and the controls (add, trigger, retry a month, activate, deactivate) through
//!   [`adapters::backfill::Backfill`];
//! - **jobs**: the scheduled jobs, their runs (`job_runs`, failed ones included), executing one
//!   for a date (the schedule's input, invoked asynchronously, answered with an execution id
//!   the run is recorded under), and per-job statistics;
//! - **operations**: Kafka dead letters per consumer and redrive requests, a coupon request's
//!   outcome, an alert's deliveries, rollup review items and resolving one, and `GET
//!   /admin/health` (the only route without the authorizer; it names no host).
//!
//! Callers: a token with `ops:read` reads, one with `ops:admin` also changes (HTTP 403
//! otherwise). Every change takes an `Idempotency-Key` ([`idempotency`]) and writes an audit
//! row. Lists are keyset-paginated with an opaque `cursor`. Errors are problem JSON. The
//! OpenAPI 3.1 document ([`openapi::document`]) is generated from the handlers and types,
//! committed as `docs/openapi.json` and served at `/admin/openapi.json`.

mod auth;
pub mod backfill;
pub mod contract;
pub mod health;
pub mod idempotency;
pub mod insights;
pub mod jobs;
pub mod openapi;
pub mod operations;

use std::collections::HashMap;
use std::sync::Arc;

use adapters::backfill::Backfill;
use adapters::bootstrap::ApiFunction;
use adapters::outbox::Outbox;
use adapters::{aws, config};
use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

pub use auth::{Admin, Reader};

/// admin-api's own settings.
#[derive(Deserialize)]
struct Settings {
    jobs_queue_url: String,
    operator_alerts_topic_arn: String,
    daily_rollup_function: String,
    budget_settlement_function: String,
    retention_function: String,
    cdp_orchestrator_function: String,
    daily_collection_function: String,
    recommendations_function: String,
    weekly_analysis_function: String,
    monthly_report_function: String,
    /// The Lambda API's endpoint when it is not AWS's (the local stack's `cargo lambda watch`).
    aws_endpoint_url_lambda: Option<String>,
}

pub struct Deps {
    pub db: PgPool,
    pub backfill: Backfill,
    pub lambda: aws_sdk_lambda::Client,
    /// The deployed name of each job's function, by the function's crate name.
    pub functions: HashMap<&'static str, String>,
    pub probes: health::Probes,
}

impl Deps {
    /// `DATABASE_*`, `REDIS_*`, `KAFKA_BROKERS`, `JOBS_QUEUE_URL`, `OPERATOR_ALERTS_TOPIC_ARN`,
    /// and each job's function: `DAILY_ROLLUP_FUNCTION`, `BUDGET_SETTLEMENT_FUNCTION`,
    /// `RETENTION_FUNCTION`, `CDP_ORCHESTRATOR_FUNCTION`, `DAILY_COLLECTION_FUNCTION`,
    /// `RECOMMENDATIONS_FUNCTION`, `WEEKLY_ANALYSIS_FUNCTION`, `MONTHLY_REPORT_FUNCTION`.
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let kafka: config::KafkaConfig = config::from_env()?;
        let redis = adapters::redis::connect_lazy(&config::RedisConfig::from_env()?)?;
        let ApiFunction { sdk, db } = ApiFunction::from_env().await?;
        let outbox = Outbox::new(
            db.clone(),
            aws::sns(&sdk),
            adapters::backfill::PRODUCER,
            settings.operator_alerts_topic_arn,
        );
        let sqs = aws::sqs(&sdk);
        let mut lambda = aws_sdk_lambda::config::Builder::from(&sdk);
        if let Some(url) = &settings.aws_endpoint_url_lambda {
            lambda = lambda.endpoint_url(url);
        }
        let functions = HashMap::from([
            ("daily-rollup", settings.daily_rollup_function),
            ("budget-settlement", settings.budget_settlement_function),
            ("retention", settings.retention_function),
            ("cdp-orchestrator", settings.cdp_orchestrator_function),
            ("daily-collection", settings.daily_collection_function),
            ("recommendations", settings.recommendations_function),
            ("weekly-analysis", settings.weekly_analysis_function),
            ("monthly-report", settings.monthly_report_function),
        ]);
        Ok(Self {
            backfill: Backfill::new(db.clone(), sqs.clone(), &settings.jobs_queue_url, outbox),
            probes: health::Probes {
                db: db.clone(),
                redis,
                brokers: kafka.brokers,
                sqs,
                queue_url: settings.jobs_queue_url,
            },
            lambda: aws_sdk_lambda::Client::from_conf(lambda.build()),
            functions,
            db,
        })
    }
}

/// The function's routes, as API Gateway reaches them (`adapters::http::app`).
pub fn router(deps: Arc<Deps>) -> adapters::http::App {
    use backfill as b;
    use jobs as j;
    use operations as o;
    adapters::http::app(
        Router::new()
            .route("/admin/health", get(health::health))
            .route("/admin/openapi.json", get(openapi::serve))
            .route("/admin/backfill/status", get(b::status))
            .route(
                "/admin/backfill/advertisers",
                get(b::advertisers).post(b::add),
            )
            .route(
                "/admin/backfill/advertisers/{advertiser_id}",
                get(b::advertiser),
            )
            .route(
                "/admin/backfill/advertisers/{advertiser_id}/progress",
                get(b::progress),
            )
            .route(
                "/admin/backfill/advertisers/{advertiser_id}/months",
                get(b::months),
            )
            .route(
                "/admin/backfill/advertisers/{advertiser_id}/trigger",
                post(b::trigger),
            )
            .route(
                "/admin/backfill/advertisers/{advertiser_id}/months/{month}/retry",
                post(b::retry),
            )
            .route(
                "/admin/backfill/advertisers/{advertiser_id}/activate",
                post(b::activate),
            )
            .route(
                "/admin/backfill/advertisers/{advertiser_id}/deactivate",
                post(b::deactivate),
            )
            .route("/admin/backfill/running", get(b::running))
            .route("/admin/jobs", get(j::jobs))
            .route("/admin/jobs/runs", get(j::runs))
            .route("/admin/jobs/runs/{run_id}", get(j::run))
            .route("/admin/jobs/statistics", get(j::statistics))
            .route("/admin/jobs/{job}/executions", post(j::execute))
            .route("/admin/jobs/executions/{execution_id}", get(j::execution))
            .route("/admin/dead-letters", get(o::dead_letter_summary))
            .route("/admin/dead-letters/{consumer}", get(o::dead_letters))
            .route("/admin/dead-letters/{consumer}/redrive", post(o::redrive))
            .route(
                "/admin/coupons/requests/{request_id}",
                get(o::coupon_outcome),
            )
            .route(
                "/admin/alerts/{alert_id}/deliveries",
                get(o::alert_deliveries),
            )
            .route("/admin/rollup/reviews", get(o::rollup_reviews))
            .route("/admin/insights/weekly", get(insights::weekly))
            .route("/admin/recommendations/{user_id}", get(insights::reader))
            .route(
                "/admin/rollup/reviews/{stat_date}/{campaign_id}/resolve",
                post(o::resolve_review),
            )
            // Every route's request checked against the OpenAPI document first.
            .route_layer(axum::middleware::from_fn(contract::enforce))
            .with_state(deps),
    )
}

/// One page of a list: its items, and the cursor of the next page (absent on the last).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `rows` (one more than `limit` fetched), its cursor from `key`.
    pub fn of<K: Serialize>(rows: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> Self {
        let (items, next_cursor) = domain::admin::page(rows, limit, key);
        Self { items, next_cursor }
    }
}

/// A list's paging parameters, read from its query.
pub(crate) fn paging<K: serde::de::DeserializeOwned>(
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<(Option<K>, u32), adapters::http::Problem> {
    let limit = domain::admin::page_size(limit)?;
    let cursor = cursor.map(domain::admin::decode_cursor::<K>).transpose()?;
    Ok((cursor, limit))
}

/// A row count or size as the API shows it.
pub(crate) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An answer as kept for an idempotency key's repeats.
pub(crate) fn to_json<T: Serialize>(value: T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
