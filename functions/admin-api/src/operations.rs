//! Operations: Kafka dead letters and redrive requests, a coupon request's outcome, an alert's
//! deliveries, rollup review items.

use std::sync::Arc;

use adapters::db::classify;
use adapters::http::{Params, Problem, QueryOf, json, json_body};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::idempotency::{Change, perform};
use crate::{Admin, Deps, Page, Reader, paging};

/// A consumer's dead letters.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsumerDeadLetters {
    pub consumer: String,
    pub total: i64,
    /// Claimed but not yet on the dead-letter topic (a dead letter being sent, or stuck).
    pub unsent: i64,
    pub last_at: DateTime<Utc>,
    /// The five latest reasons, newest first.
    pub recent_reasons: Vec<String>,
    /// Since when a redrive request of its dead letters waits to be run (none waits: null).
    pub pending_redrive_since: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/admin/dead-letters", tag = "operations",
    responses((status = 200, description = "Dead letters per Kafka consumer", body = Vec<ConsumerDeadLetters>)))]
pub async fn dead_letter_summary(
    State(deps): State<Arc<Deps>>,
    _: Reader,
) -> Result<Response, Problem> {
    let rows = sqlx::query_file!("sql/dead_letter_summary.sql")
        .fetch_all(&deps.db)
        .await
        .map_err(classify)?;
    let summary: Vec<ConsumerDeadLetters> = rows
        .into_iter()
        .map(|row| ConsumerDeadLetters {
            consumer: row.consumer,
            total: row.total,
            unsent: row.unsent,
            last_at: row.last_at,
            recent_reasons: row.recent_reasons,
            pending_redrive_since: row.pending_redrive_since,
        })
        .collect();
    Ok(json(StatusCode::OK, &summary))
}

/// One dead-lettered record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConsumerPath {
    /// The consumer (the function's name, e.g. coupon-issue).
    #[param(max_length = 100)]
    pub consumer: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only records of this topic.
    #[param(max_length = 249)]
    pub topic: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/dead-letters/{consumer}", tag = "operations",
    params(ConsumerPath, DeadLetterQuery),
    responses((status = 200, description = "A page of the consumer's dead letters, newest first", body = Page<DeadLetter>)))]
pub async fn dead_letters(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<ConsumerPath>,
    QueryOf(query): QueryOf<DeadLetterQuery>,
) -> Result<Response, Problem> {
    type Key = (DateTime<Utc>, String, i32, i64);
    let (before, limit) = paging::<Key>(query.cursor.as_deref(), query.limit)?;
    let first_page = before.is_none();
    let (at, topic, partition, offset) = before.unwrap_or((Utc::now(), String::new(), 0, 0));
    let rows = sqlx::query_file!(
        "sql/dead_letters.sql",
        path.consumer,
        at,
        topic,
        partition,
        offset,
        query.topic,
        i64::from(limit) + 1,
        first_page,
    )
    .fetch_all(&deps.db)
    .await
    .map_err(classify)?;
    let items = rows
        .into_iter()
        .map(|row| DeadLetter {
            topic: row.topic,
            partition: row.partition,
            offset: row.offset,
            reason: row.reason,
            attempts: row.attempts,
            created_at: row.created_at,
            sent_at: row.sent_at,
        })
        .collect();
    let page = Page::of(items, limit, |d: &DeadLetter| {
        (d.created_at, d.topic.clone(), d.partition, d.offset)
    });
    Ok(json(StatusCode::OK, &page))
}

/// A redrive request, for the operators who run it (`make redrive DLQ=…`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RedriveRequested {
    pub consumer: String,
    pub requests: Vec<RedriveRequest>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RedriveRequest {
    pub id: i64,
    /// The dead-letter topic to replay to where its records came from.
    pub dlq_topic: String,
    pub requested_at: DateTime<Utc>,
    /// What replays it.
    pub command: String,
}

#[utoipa::path(post, path = "/admin/dead-letters/{consumer}/redrive", tag = "operations",
    params(ConsumerPath),
    responses((status = 202, description = "Requested: one per dead-letter topic the consumer wrote to", body = RedriveRequested)))]
pub async fn redrive(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    Params(path): Params<ConsumerPath>,
) -> Result<Response, Problem> {
    let work = async {
        let topics = sqlx::query_file_scalar!("sql/consumer_topics.sql", path.consumer)
            .fetch_all(&deps.db)
            .await
            .map_err(classify)?;
        if topics.is_empty() {
            return Err(Problem::not_found());
        }
        let dlqs = domain::admin::dead_letter_topics(&path.consumer, &topics);
        let mut tx = deps.db.begin().await.map_err(classify)?;
        let mut requests = Vec::with_capacity(dlqs.len());
        for dlq in dlqs {
            let row = sqlx::query_file!(
                "sql/insert_redrive.sql",
                path.consumer,
                dlq,
                caller.subject,
                caller.request_id,
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
            requests.push(RedriveRequest {
                id: row.id,
                command: format!("make redrive DLQ={dlq}"),
                dlq_topic: dlq,
                requested_at: row.requested_at,
            });
        }
        tx.commit().await.map_err(classify)?;
        Ok((
            StatusCode::ACCEPTED,
            crate::to_json(RedriveRequested {
                consumer: path.consumer.clone(),
                requests,
            }),
        ))
    };
    let change = Change {
        action: "dead_letters.redrive",
        target: format!("dead-letters/{}", path.consumer),
        body: &[],
    };
    perform(&deps, &caller, &headers, change, work).await
}

/// A coupon request's outcome.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CouponOutcome {
    pub request_id: String,
    pub coupon_id: i64,
    pub user_id: i64,
    /// issued, sold_out, duplicate, invalid or expired.
    pub outcome: String,
    pub reason: Option<String>,
    pub decided_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CouponPath {
    /// The request's id, as the client sent it.
    #[param(max_length = 200)]
    pub request_id: String,
}

#[utoipa::path(get, path = "/admin/coupons/requests/{request_id}", tag = "operations",
    params(CouponPath),
    responses((status = 200, description = "The recorded outcome; 404 until it is decided", body = CouponOutcome)))]
pub async fn coupon_outcome(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<CouponPath>,
) -> Result<Response, Problem> {
    let answer = adapters::coupons::lookup(&deps.db, &path.request_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let outcome = CouponOutcome {
        request_id: answer.request_id,
        coupon_id: answer.coupon_id,
        user_id: answer.user_id,
        outcome: answer.outcome.as_str().to_owned(),
        reason: answer.reason,
        decided_at: answer.decided_at,
    };
    Ok(json(StatusCode::OK, &outcome))
}

/// An alert's deliveries: counts by state, and a page of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertDeliveries {
    pub alert_id: i64,
    pub alert_kind: String,
    pub app_name: String,
    pub severity: String,
    pub created_at: DateTime<Utc>,
    pub recipients: i64,
    pub pending: i64,
    pub delivered: i64,
    pub gone: i64,
    pub failed: i64,
    pub deliveries: Page<Delivery>,
}

/// One delivery of an alert to one recipient's device or connection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub user_id: String,
    /// push or web.
    pub channel: String,
    /// pending, delivered, gone or failed.
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub settled_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    target: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AlertPath {
    /// The alert's id.
    pub alert_id: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Gone,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Push,
    Web,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries in this state.
    pub state: Option<DeliveryState>,
    /// Only deliveries by this channel.
    pub channel: Option<Channel>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// An enum's name as the database stores it.
fn lower<T: Serialize>(value: T) -> Option<String> {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

#[utoipa::path(get, path = "/admin/alerts/{alert_id}/deliveries", tag = "operations",
    params(AlertPath, DeliveryQuery),
    responses((status = 200, description = "The alert's delivery counts and a page of its deliveries", body = AlertDeliveries)))]
pub async fn alert_deliveries(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<AlertPath>,
    QueryOf(query): QueryOf<DeliveryQuery>,
) -> Result<Response, Problem> {
    let (after, limit) = paging::<(String, String, String)>(query.cursor.as_deref(), query.limit)?;
    let alert = sqlx::query_file!("sql/alert.sql", path.alert_id)
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?
        .ok_or_else(Problem::not_found)?;
    let (user, channel, target) = after.unwrap_or_default();
    let rows = sqlx::query_file!(
        "sql/alert_deliveries.sql",
        path.alert_id,
        user,
        channel,
        target,
        query.state.and_then(lower),
        query.channel.and_then(lower),
        i64::from(limit) + 1,
    )
    .fetch_all(&deps.db)
    .await
    .map_err(classify)?;
    let items = rows
        .into_iter()
        .map(|row| Delivery {
            user_id: row.user_id,
            channel: row.channel,
            state: row.state,
            attempts: row.attempts,
            last_error: row.last_error,
            settled_at: row.settled_at,
            target: row.target,
        })
        .collect();
    let deliveries = Page::of(items, limit, |d: &Delivery| {
        (d.user_id.clone(), d.channel.clone(), d.target.clone())
    });
    let answer = AlertDeliveries {
        alert_id: alert.id,
        alert_kind: alert.alert_kind,
        app_name: alert.app_name,
        severity: alert.severity,
        created_at: alert.created_at,
        recipients: alert.recipients,
        pending: alert.pending,
        delivered: alert.delivered,
        gone: alert.gone,
        failed: alert.failed,
        deliveries,
    };
    Ok(json(StatusCode::OK, &answer))
}

/// A campaign-day whose rollup differs from its raw events by 5 % or more.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Review {
    pub stat_date: NaiveDate,
    pub campaign_id: i64,
    pub advertiser_id: i64,
    pub metric: String,
    pub rolled_up: i64,
    pub raw: i64,
    pub difference_ratio: f64,
    /// open or resolved.
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
}

macro_rules! review {
    ($row:expr) => {
        Review {
            stat_date: $row.stat_date,
            campaign_id: $row.campaign_id,
            advertiser_id: $row.advertiser_id,
            metric: $row.metric,
            rolled_up: $row.rolled_up,
            raw: $row.raw,
            difference_ratio: $row.difference_ratio,
            status: $row.status,
            opened_at: $row.opened_at,
            resolved_by: $row.resolved_by,
            resolved_at: $row.resolved_at,
            resolution: $row.resolution,
        }
    };
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Open,
    Resolved,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// open (the default) or resolved.
    pub status: Option<ReviewStatus>,
    /// Only this day's items.
    pub date: Option<NaiveDate>,
    /// Only this advertiser's items.
    pub advertiser_id: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/rollup/reviews", tag = "operations", params(ReviewQuery),
    responses((status = 200, description = "A page of review items, newest day first", body = Page<Review>)))]
pub async fn rollup_reviews(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    QueryOf(query): QueryOf<ReviewQuery>,
) -> Result<Response, Problem> {
    let (after, limit) = paging::<(NaiveDate, i64)>(query.cursor.as_deref(), query.limit)?;
    let (date, campaign) = after.unzip();
    let rows = sqlx::query_file!(
        "sql/rollup_reviews.sql",
        date,
        campaign,
        lower(query.status.unwrap_or(ReviewStatus::Open)),
        query.date,
        query.advertiser_id,
        i64::from(limit) + 1,
    )
    .fetch_all(&deps.db)
    .await
    .map_err(classify)?;
    let items = rows.into_iter().map(|row| review!(row)).collect();
    let page = Page::of(items, limit, |r: &Review| (r.stat_date, r.campaign_id));
    Ok(json(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReviewPath {
    pub stat_date: NaiveDate,
    pub campaign_id: i64,
}

/// Why an item is resolved.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// 1 to 500 characters as sent, not blank; stored trimmed.
    #[schema(min_length = 1, max_length = 500)]
    pub resolution: String,
}

#[utoipa::path(post, path = "/admin/rollup/reviews/{stat_date}/{campaign_id}/resolve", tag = "operations",
    params(ReviewPath), request_body = Resolution,
    responses((status = 200, description = "Resolved (a resolved item keeps its first resolution)", body = Review)))]
pub async fn resolve_review(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    Params(path): Params<ReviewPath>,
    body: Bytes,
) -> Result<Response, Problem> {
    let work = async {
        let resolution: Resolution = json_body(&headers, &body)?;
        // Its length is the document's, checked as sent (crate::contract).
        let text = resolution.resolution.trim();
        if text.is_empty() {
            return Err(Problem::invalid("resolution is blank"));
        }
        let row = sqlx::query_file!(
            "sql/resolve_review.sql",
            path.stat_date,
            path.campaign_id,
            caller.subject,
            domain::text::storable(text),
        )
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?
        .ok_or_else(Problem::not_found)?;
        Ok((StatusCode::OK, crate::to_json(review!(row))))
    };
    let change = Change {
        action: "rollup.resolve_review",
        target: format!("rollup/reviews/{}/{}", path.stat_date, path.campaign_id),
        body: &body,
    };
    perform(&deps, &caller, &headers, change, work).await
}
