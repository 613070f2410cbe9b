//! The CDP backfill (seed 001's `/api/v2/batch/…`): status, progress, months, the months in
//! flight, and the controls, through [`adapters::backfill::Backfill`].

use std::sync::Arc;

use adapters::db::classify;
use adapters::http::{Params, Problem, QueryOf, json, json_body};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use domain::backfill::{self as rules, BACKFILL_MONTHS, MAX_RETRIES, month_key, parse_month};
use domain::calendar::kst_date;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::idempotency::{Change, perform};
use crate::{Admin, Deps, Page, Reader, count, paging};

/// The backfill as a whole.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackfillStatus {
    pub advertisers: AdvertiserCounts,
    pub months: MonthCounts,
    /// Months completed in the last hour, by every worker.
    pub completed_last_hour: i64,
    /// The month every EXISTING advertiser keeps current (the month of yesterday, Asia/Seoul).
    pub current_month: String,
    /// The orchestrator's latest tick and clean-up.
    pub last_tick: Option<crate::jobs::Run>,
    pub last_clean_up: Option<crate::jobs::Run>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdvertiserCounts {
    pub total: i64,
    pub active: i64,
    pub inactive: i64,
    /// NEW: still backfilling their 24 months.
    pub backfilling: i64,
    pub backfill_completed: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonthCounts {
    pub pending: i64,
    pub queued: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    /// FAILED months that used every retry (their advertisers were deactivated).
    pub exhausted: i64,
}

#[utoipa::path(get, path = "/admin/backfill/status", tag = "backfill",
    responses((status = 200, description = "The backfill as a whole", body = BackfillStatus)))]
pub async fn status(State(deps): State<Arc<Deps>>, _: Reader) -> Result<Response, Problem> {
    let row = sqlx::query_file!(
        "sql/backfill_status.sql",
        i32::try_from(MAX_RETRIES).unwrap_or(i32::MAX)
    )
    .fetch_one(&deps.db)
    .await
    .map_err(classify)?;
    let runs =
        crate::jobs::latest_runs(&deps.db, &["cdp-orchestrator", "cdp-stale-cleanup"]).await?;
    let latest = |job: &str| runs.iter().find(|run| run.job == job).cloned();
    let status = BackfillStatus {
        advertisers: AdvertiserCounts {
            total: row.advertisers,
            active: row.active,
            inactive: row.advertisers - row.active,
            backfilling: row.backfilling,
            backfill_completed: row.backfill_completed,
        },
        months: MonthCounts {
            pending: row.pending,
            queued: row.queued,
            running: row.running,
            completed: row.completed,
            failed: row.failed,
            exhausted: row.exhausted,
        },
        completed_last_hour: row.completed_last_hour,
        current_month: month_key(rules::current_month(kst_date(Utc::now()))),
        last_tick: latest("cdp-orchestrator"),
        last_clean_up: latest("cdp-stale-cleanup"),
    };
    Ok(json(StatusCode::OK, &status))
}

/// An advertiser the backfill knows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Advertiser {
    pub advertiser_id: i64,
    pub name: String,
    /// NEW while backfilling, then EXISTING.
    pub advertiser_type: String,
    pub active: bool,
    /// `YYYY-MM`: the oldest month of its backfill.
    pub backfill_start_month: Option<String>,
    pub backfill_completed: bool,
    pub last_completed_month: Option<String>,
    /// Why it was deactivated (an exhausted month's error, or the operator's reason).
    pub deactivated_reason: Option<String>,
    /// The operator (the token's subject) who deactivated it; null when an exhausted month did.
    pub deactivated_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

macro_rules! advertiser {
    ($row:expr) => {
        Advertiser {
            advertiser_id: $row.advertiser_id,
            name: $row.name,
            advertiser_type: $row.advertiser_type,
            active: $row.active,
            backfill_start_month: $row.backfill_start_month.map(month_key),
            backfill_completed: $row.backfill_completed,
            last_completed_month: $row.last_completed_month.map(month_key),
            deactivated_reason: $row.deactivated_reason,
            deactivated_by: $row.deactivated_by,
            created_at: $row.created_at,
            updated_at: $row.updated_at,
        }
    };
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum AdvertiserType {
    New,
    Existing,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdvertiserQuery {
    /// Only active (true) or inactive (false) advertisers.
    pub active: Option<bool>,
    /// Only NEW or EXISTING advertisers.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub advertiser_type: Option<AdvertiserType>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/backfill/advertisers", tag = "backfill", params(AdvertiserQuery),
    responses((status = 200, description = "A page of advertisers by id", body = Page<Advertiser>)))]
pub async fn advertisers(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    QueryOf(query): QueryOf<AdvertiserQuery>,
) -> Result<Response, Problem> {
    let (after, limit) = paging::<i64>(query.cursor.as_deref(), query.limit)?;
    let kind = query.advertiser_type.map(|t| match t {
        AdvertiserType::New => "NEW",
        AdvertiserType::Existing => "EXISTING",
    });
    let rows = sqlx::query_file!(
        "sql/advertisers.sql",
        after.unwrap_or(0),
        query.active,
        kind,
        i64::from(limit) + 1,
    )
    .fetch_all(&deps.db)
    .await
    .map_err(classify)?;
    let items = rows.into_iter().map(|row| advertiser!(row)).collect();
    let page = Page::of(items, limit, |a: &Advertiser| a.advertiser_id);
    Ok(json(StatusCode::OK, &page))
}

/// Reads an advertiser, 404 when there is none.
async fn find(deps: &Deps, advertiser_id: i64) -> Result<Advertiser, Problem> {
    let row = sqlx::query_file!("sql/advertiser.sql", advertiser_id)
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?
        .ok_or_else(Problem::not_found)?;
    Ok(advertiser!(row))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AdvertiserPath {
    /// The advertiser's id.
    #[param(minimum = 1)]
    pub advertiser_id: i64,
}

#[utoipa::path(get, path = "/admin/backfill/advertisers/{advertiser_id}", tag = "backfill",
    params(AdvertiserPath),
    responses((status = 200, description = "The advertiser", body = Advertiser)))]
pub async fn advertiser(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<AdvertiserPath>,
) -> Result<Response, Problem> {
    Ok(json(
        StatusCode::OK,
        &find(&deps, path.advertiser_id).await?,
    ))
}

/// An advertiser's backfill progress.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub advertiser_id: i64,
    pub name: String,
    pub advertiser_type: String,
    pub active: bool,
    /// Months of the backfill (24).
    pub months_total: i64,
    pub months_done: i64,
    pub months_failed: i64,
    pub months_in_flight: i64,
    /// `months_done / months_total`, 0 to 100.
    pub percent: f64,
    /// `YYYY-MM`: the month of yesterday in Asia/Seoul, kept current once backfilled.
    pub current_month: String,
    /// The current month's state, if it has one yet.
    pub current_month_state: Option<String>,
    /// When the backfill should finish at the pace of its last months; absent when done, or
    /// without two recent completions to measure a pace.
    pub eta: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/admin/backfill/advertisers/{advertiser_id}/progress", tag = "backfill",
    params(AdvertiserPath),
    responses((status = 200, description = "Months done of 24, the current month, the ETA", body = Progress)))]
pub async fn progress(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<AdvertiserPath>,
) -> Result<Response, Problem> {
    let advertiser = find(&deps, path.advertiser_id).await?;
    let now = Utc::now();
    let current = rules::current_month(kst_date(now));
    let row = sqlx::query_file!(
        "sql/advertiser_progress.sql",
        path.advertiser_id,
        i32::try_from(BACKFILL_MONTHS).unwrap_or(i32::MAX),
        current,
    )
    .fetch_one(&deps.db)
    .await
    .map_err(classify)?;
    let total = i64::from(BACKFILL_MONTHS);
    let done = if advertiser.backfill_completed {
        total
    } else {
        row.done.min(total)
    };
    let remaining = u32::try_from(total - done).unwrap_or(0);
    let completions = row.recent_completions.unwrap_or_default();
    let progress = Progress {
        advertiser_id: advertiser.advertiser_id,
        name: advertiser.name,
        advertiser_type: advertiser.advertiser_type,
        active: advertiser.active,
        months_total: total,
        months_done: done,
        months_failed: row.failed,
        months_in_flight: row.in_flight,
        percent: (done as f64 * 1000.0 / total as f64).round() / 10.0,
        current_month: month_key(current),
        current_month_state: row.current_state,
        eta: if advertiser.active {
            domain::admin::eta(remaining, &completions, now)
        } else {
            None
        },
    };
    Ok(json(StatusCode::OK, &progress))
}

/// One month of an advertiser.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonthState {
    /// `YYYY-MM`.
    pub month: String,
    /// PENDING, QUEUED, RUNNING, COMPLETED or FAILED.
    pub state: String,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub processed_records: i64,
    pub failed_records: i64,
    pub error: Option<String>,
    pub retry_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum MonthStateName {
    Pending,
    Queued,
    Running,
    Completed,
    Failed,
}

impl MonthStateName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// Only months in this state.
    pub state: Option<MonthStateName>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/backfill/advertisers/{advertiser_id}/months", tag = "backfill",
    params(AdvertiserPath, MonthQuery),
    responses((status = 200, description = "A page of the advertiser's months, oldest first", body = Page<MonthState>)))]
pub async fn months(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<AdvertiserPath>,
    QueryOf(query): QueryOf<MonthQuery>,
) -> Result<Response, Problem> {
    let (after, limit) = paging::<NaiveDate>(query.cursor.as_deref(), query.limit)?;
    find(&deps, path.advertiser_id).await?;
    let rows = sqlx::query_file!(
        "sql/advertiser_months.sql",
        path.advertiser_id,
        after,
        query.state.map(MonthStateName::as_str),
        i64::from(limit) + 1,
    )
    .fetch_all(&deps.db)
    .await
    .map_err(classify)?;
    let rows: Vec<(NaiveDate, MonthState)> = rows
        .into_iter()
        .map(|row| {
            (
                row.month,
                MonthState {
                    month: month_key(row.month),
                    state: row.state,
                    queued_at: row.queued_at,
                    started_at: row.started_at,
                    completed_at: row.completed_at,
                    processed_records: row.processed_records,
                    failed_records: row.failed_records,
                    error: row.error,
                    retry_count: row.retry_count,
                    next_attempt_at: row.next_attempt_at,
                },
            )
        })
        .collect();
    let Page { items, next_cursor } = Page::of(rows, limit, |(month, _)| *month);
    let page = Page {
        items: items
            .into_iter()
            .map(|(_, state)| state)
            .collect::<Vec<_>>(),
        next_cursor,
    };
    Ok(json(StatusCode::OK, &page))
}

/// A month in flight.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunningMonth {
    pub advertiser_id: i64,
    /// `YYYY-MM`.
    pub month: String,
    /// QUEUED or RUNNING.
    pub state: String,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub retry_count: i32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum InFlight {
    Queued,
    Running,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunningQuery {
    /// Only QUEUED or only RUNNING months.
    pub state: Option<InFlight>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/backfill/running", tag = "backfill", params(RunningQuery),
    responses((status = 200, description = "A page of the months queued or running, by advertiser", body = Page<RunningMonth>)))]
pub async fn running(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    QueryOf(query): QueryOf<RunningQuery>,
) -> Result<Response, Problem> {
    let (after, limit) = paging::<(i64, NaiveDate)>(query.cursor.as_deref(), query.limit)?;
    let (after_id, after_month) = after.unzip();
    let state = query.state.map(|s| match s {
        InFlight::Queued => "QUEUED",
        InFlight::Running => "RUNNING",
    });
    let rows = sqlx::query_file!(
        "sql/running_months.sql",
        after_id,
        after_month,
        state,
        i64::from(limit) + 1,
    )
    .fetch_all(&deps.db)
    .await
    .map_err(classify)?;
    let rows: Vec<(NaiveDate, RunningMonth)> = rows
        .into_iter()
        .map(|row| {
            (
                row.month,
                RunningMonth {
                    advertiser_id: row.advertiser_id,
                    month: month_key(row.month),
                    state: row.state,
                    queued_at: row.queued_at,
                    started_at: row.started_at,
                    retry_count: row.retry_count,
                },
            )
        })
        .collect();
    let Page { items, next_cursor } = Page::of(rows, limit, |(month, m)| (m.advertiser_id, *month));
    let page = Page {
        items: items.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
        next_cursor,
    };
    Ok(json(StatusCode::OK, &page))
}

/// A new advertiser.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdvertiser {
    #[schema(minimum = 1)]
    pub advertiser_id: i64,
    /// 1 to 200 characters as sent, not blank, no control characters; stored trimmed.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

/// What adding an advertiser did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Added {
    pub advertiser_id: i64,
    /// False: it was there already, and nothing changed.
    pub added: bool,
}

#[utoipa::path(post, path = "/admin/backfill/advertisers", tag = "backfill",
    request_body = NewAdvertiser,
    responses(
        (status = 201, description = "Added; its backfill has started", body = Added),
        (status = 200, description = "It was there already", body = Added)))]
pub async fn add(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let work = async {
        let new: NewAdvertiser = json_body(&headers, &body)?;
        if new.advertiser_id <= 0 {
            return Err(Problem::invalid("advertiser_id must be positive"));
        }
        // Its length is the document's, checked as sent (crate::contract).
        let name = new.name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(Problem::invalid("name is blank or has control characters"));
        }
        let added = deps
            .backfill
            .add_advertiser(new.advertiser_id, name)
            .await?;
        let status = if added {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            crate::to_json(Added {
                advertiser_id: new.advertiser_id,
                added,
            }),
        ))
    };
    let change = Change {
        action: "backfill.add_advertiser",
        target: "advertisers".to_owned(),
        body: &body,
    };
    perform(&deps, &caller, &headers, change, work).await
}

/// What a trigger queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Triggered {
    pub advertiser_id: i64,
    /// Months queued now.
    pub queued: i64,
    /// True when a month of it was already in flight (one at a time).
    pub waiting: bool,
    /// True when its backfill completed with this run.
    pub completed: bool,
}

#[utoipa::path(post, path = "/admin/backfill/advertisers/{advertiser_id}/trigger", tag = "backfill",
    params(AdvertiserPath),
    responses((status = 202, description = "Advanced now: its next month queued without waiting for the tick", body = Triggered)))]
pub async fn trigger(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    Params(path): Params<AdvertiserPath>,
) -> Result<Response, Problem> {
    let id = path.advertiser_id;
    let work = async {
        let advertiser = find(&deps, id).await?;
        if !advertiser.active {
            return Err(Problem::conflict(
                "the advertiser is inactive: activate it first",
            ));
        }
        let advanced = deps.backfill.trigger(id).await?;
        Ok((
            StatusCode::ACCEPTED,
            crate::to_json(Triggered {
                advertiser_id: id,
                queued: count(advanced.queued),
                waiting: advanced.waiting > 0,
                completed: advanced.completed > 0,
            }),
        ))
    };
    let change = Change {
        action: "backfill.trigger",
        target: format!("advertisers/{id}"),
        body: &[],
    };
    perform(&deps, &caller, &headers, change, work).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MonthPath {
    /// The advertiser's id.
    #[param(minimum = 1)]
    pub advertiser_id: i64,
    /// `YYYY-MM`.
    #[param(pattern = "^[0-9]{4}-[0-9]{2}$")]
    pub month: String,
}

/// What a retry did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Retried {
    pub advertiser_id: i64,
    pub month: String,
}

#[utoipa::path(post, path = "/admin/backfill/advertisers/{advertiser_id}/months/{month}/retry", tag = "backfill",
    params(MonthPath),
    responses((status = 202, description = "The FAILED month got its retries back and is queued", body = Retried)))]
pub async fn retry(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    Params(path): Params<MonthPath>,
) -> Result<Response, Problem> {
    let id = path.advertiser_id;
    let work = async {
        let month =
            parse_month(&path.month).ok_or_else(|| Problem::invalid("month must be YYYY-MM"))?;
        let advertiser = find(&deps, id).await?;
        if !advertiser.active {
            return Err(Problem::conflict(
                "the advertiser is inactive: activate it (that revives its exhausted months)",
            ));
        }
        if !deps.backfill.retry_month(id, month).await? {
            return Err(Problem::conflict("the month is not FAILED"));
        }
        Ok((
            StatusCode::ACCEPTED,
            crate::to_json(Retried {
                advertiser_id: id,
                month: month_key(month),
            }),
        ))
    };
    let change = Change {
        action: "backfill.retry_month",
        target: format!("advertisers/{id}/months/{}", path.month),
        body: &[],
    };
    perform(&deps, &caller, &headers, change, work).await
}

/// An operator's reason to deactivate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deactivation {
    /// 1 to 500 characters as sent, not blank; stored trimmed, the operator beside it.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// An advertiser's activity after a change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    pub advertiser_id: i64,
    pub active: bool,
}

#[utoipa::path(post, path = "/admin/backfill/advertisers/{advertiser_id}/activate", tag = "backfill",
    params(AdvertiserPath),
    responses((status = 200, description = "Active; its exhausted months got their retries back", body = Activity)))]
pub async fn activate(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    Params(path): Params<AdvertiserPath>,
) -> Result<Response, Problem> {
    let id = path.advertiser_id;
    let work = set_active(&deps, id, true, "", &caller.subject);
    let change = Change {
        action: "backfill.activate",
        target: format!("advertisers/{id}"),
        body: &[],
    };
    perform(&deps, &caller, &headers, change, work).await
}

#[utoipa::path(post, path = "/admin/backfill/advertisers/{advertiser_id}/deactivate", tag = "backfill",
    params(AdvertiserPath), request_body = Deactivation,
    responses((status = 200, description = "Inactive: no month of it is queued any more", body = Activity)))]
pub async fn deactivate(
    State(deps): State<Arc<Deps>>,
    Admin(caller): Admin,
    headers: HeaderMap,
    Params(path): Params<AdvertiserPath>,
    body: Bytes,
) -> Result<Response, Problem> {
    let id = path.advertiser_id;
    let work = async {
        let deactivation: Deactivation = json_body(&headers, &body)?;
        // Its length (1 to 500) is the document's, checked as sent; blank is not a reason.
        let reason = deactivation.reason.trim();
        if reason.is_empty() {
            return Err(Problem::invalid("reason is blank"));
        }
        set_active(&deps, id, false, reason, &caller.subject).await
    };
    let change = Change {
        action: "backfill.deactivate",
        target: format!("advertisers/{id}"),
        body: &body,
    };
    perform(&deps, &caller, &headers, change, work).await
}

async fn set_active(
    deps: &Deps,
    id: i64,
    active: bool,
    reason: &str,
    by: &str,
) -> Result<(StatusCode, Value), Problem> {
    if !deps.backfill.set_active(id, active, reason, by).await? {
        return Err(Problem::not_found());
    }
    Ok((
        StatusCode::OK,
        crate::to_json(Activity {
            advertiser_id: id,
            active,
        }),
    ))
}
