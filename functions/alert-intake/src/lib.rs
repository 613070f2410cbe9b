//! alert-intake: `POST /alerts` behind the HTTP API's JWT authorizer (SPEC §2, seed 004).
//!
//! The alert is validated (`domain::alert`), stored, and its `alert-created-topic` record
//! written to the outbox in the same transaction; the answer is `202` with the alert's id. The
//! outbox is flushed after the commit, within [`FLUSH_BUDGET`]: a broker that is slow or down
//! leaves the record unsent (the alert is stored either way) and the next request's flush
//! publishes it, so a crash between the commit and the publish loses nothing and publishes
//! once (the outbox's claim; alert-fanout's ledger absorbs a repeat). In a quiet period the
//! function's own schedule (every minute, a non-HTTP event that `lambda_http` passes through as
//! `POST /events`) flushes what the last request left.
//!
//! A `dedupe_key` names the caller's first alert for [`Settings::dedupe_window_seconds`]: a
//! client retrying within the window gets that alert back (`duplicate: true`), not a second.

use std::sync::Arc;
use std::time::Duration;

use adapters::bootstrap::ApiFunction;
use adapters::http::{Caller, Problem, json, json_body};
use adapters::kafka::Producer;
use adapters::outbox::Outbox;
use adapters::{config, db};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use domain::WorkerError;
use domain::alert::{self, AlertCreated, AlertRequest};
use lambda_http::request::RequestContext;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The outbox's producer name: only this function publishes its rows.
pub const PRODUCER: &str = "alert-intake";
/// How long a request waits for the outbox's flush before answering anyway.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(2);
/// Records one flush publishes at most: this request's and what earlier ones left.
const FLUSH_LIMIT: i64 = 200;
/// Records the scheduled flush publishes at most.
const SCHEDULED_FLUSH_LIMIT: i64 = 5_000;

/// alert-intake's own settings.
#[derive(Deserialize)]
struct Settings {
    alert_created_topic: Option<String>,
    dedupe_window_seconds: Option<u32>,
}

pub struct Deps {
    pub db: PgPool,
    pub outbox: Outbox,
    pub dedupe_window: Duration,
}

impl Deps {
    /// `DATABASE_*`, `KAFKA_*`, `ALERT_CREATED_TOPIC` (default `alert-created-topic`),
    /// `DEDUPE_WINDOW_SECONDS` (default one hour).
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let kafka: config::KafkaConfig = config::from_env()?;
        let ApiFunction { sdk, db } = ApiFunction::from_env().await?;
        let topic = settings
            .alert_created_topic
            .unwrap_or_else(|| alert::ALERT_CREATED_TOPIC.to_owned());
        Ok(Self {
            outbox: Outbox::to_kafka(
                db.clone(),
                Producer::connect(&kafka, &sdk)?,
                PRODUCER,
                topic,
            ),
            db,
            dedupe_window: Duration::from_secs(u64::from(
                settings.dedupe_window_seconds.unwrap_or(3600),
            )),
        })
    }
}

/// The function's routes, as API Gateway reaches them (`adapters::http::app`).
pub fn router(deps: Arc<Deps>) -> adapters::http::App {
    adapters::http::app(
        Router::new()
            .route("/alerts", post(create_alert))
            .route("/events", post(scheduled_flush))
            .with_state(deps),
    )
}

/// `202 Accepted`'s body.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accepted {
    pub id: i64,
    /// The dedupe key named an earlier alert, which is this one.
    pub duplicate: bool,
}

async fn create_alert(
    State(deps): State<Arc<Deps>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let request: AlertRequest = json_body(&headers, &body)?;
    alert::validate(&request)?;
    let accepted = store(&deps, &caller, &request).await?;
    tracing::info!(
        alert_id = accepted.id,
        duplicate = accepted.duplicate,
        caller = %caller.subject,
        request_id = %caller.request_id,
        "alert accepted"
    );
    publish(&deps.outbox).await;
    Ok(json(StatusCode::ACCEPTED, &accepted))
}

/// What the scheduled flush published.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flushed {
    pub published: usize,
}

/// The schedule's flush: only for an event that is not an HTTP request (`lambda_http` passes it
/// through as `POST /events`); through API Gateway the path does not exist.
async fn scheduled_flush(
    State(deps): State<Arc<Deps>>,
    context: Option<Extension<RequestContext>>,
) -> Result<Response, Problem> {
    if !matches!(context.as_deref(), Some(RequestContext::PassThrough)) {
        return Err(Problem::not_found());
    }
    let published = deps.outbox.flush(SCHEDULED_FLUSH_LIMIT).await?;
    if published > 0 {
        tracing::warn!(
            published,
            "the scheduled flush published what requests had left"
        );
    }
    Ok(json(StatusCode::OK, &Flushed { published }))
}

/// Stores the alert and its outbox record, or finds the alert its dedupe key names.
pub async fn store(
    deps: &Deps,
    caller: &Caller,
    request: &AlertRequest,
) -> Result<Accepted, WorkerError> {
    // Twice at most: a key whose window ends between the claim and the read is claimed again.
    for _ in 0..2 {
        let mut tx = deps.db.begin().await.map_err(db::classify)?;
        let id = sqlx::query_file_scalar!(
            "sql/insert_alert.sql",
            request.alert_kind,
            request.app_name,
            request.title,
            request.body,
            request.severity.as_str(),
            caller.subject,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db::classify)?;
        if let Some(key) = &request.dedupe_key {
            let claimed = sqlx::query_file_scalar!(
                "sql/claim_dedupe_key.sql",
                caller.subject,
                key,
                id,
                deps.dedupe_window.as_secs_f64(),
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(db::classify)?;
            if claimed.is_none() {
                tx.rollback().await.map_err(db::classify)?;
                let first = sqlx::query_file_scalar!("sql/deduped_alert.sql", caller.subject, key)
                    .fetch_optional(&deps.db)
                    .await
                    .map_err(db::classify)?;
                match first {
                    Some(id) => {
                        return Ok(Accepted {
                            id,
                            duplicate: true,
                        });
                    }
                    None => continue,
                }
            }
        }
        let created = AlertCreated {
            alert_id: id,
            alert_kind: request.alert_kind.clone(),
            app_name: request.app_name.clone(),
        };
        deps.outbox
            .add(&mut tx, &[alert::alert_created(&created)])
            .await?;
        tx.commit().await.map_err(db::classify)?;
        return Ok(Accepted {
            id,
            duplicate: false,
        });
    }
    Err(WorkerError::retryable(anyhow::anyhow!(
        "dedupe key neither claimed nor found twice"
    )))
}

/// Publishes what the outbox holds, within [`FLUSH_BUDGET`]. A failure is logged, not answered:
/// the alert is stored, and the next flush publishes it.
pub async fn publish(outbox: &Outbox) {
    match tokio::time::timeout(FLUSH_BUDGET, outbox.flush(FLUSH_LIMIT)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(error.kind = err.kind(), error = %err, "outbox not flushed; the next request retries")
        }
        Err(_) => tracing::warn!(
            budget_ms = FLUSH_BUDGET.as_millis() as u64,
            "outbox flush took longer than its budget; the next request retries"
        ),
    }
}
