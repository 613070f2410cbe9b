//! Every change is idempotent under the client's `Idempotency-Key` (required) and audited.
//!
//! The first request with a key claims it, is performed, and its answer is kept for a day: a
//! repeat gets that answer again (`Idempotent-Replayed: true`) without doing anything; the key
//! for another request (another operation, target or body) is refused with 422; a repeat while
//! the first is still running gets 409. An answer that says the client may retry (503: a
//! dependency failed) gives the key back. A claim whose request died is taken over after a
//! minute. Every change, whatever its outcome, writes an `admin_audit` row: who, what, on what,
//! when, the request's id and the status answered.

use std::future::Future;

use adapters::db::classify;
use adapters::http::{Caller, Problem, json};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use domain::admin::{fingerprint, idempotency_key};
use serde_json::Value;

use crate::Deps;

/// The header a replayed answer carries.
pub const REPLAYED: &str = "idempotent-replayed";

/// One change: what it is (`action`), on what (`target`), with which body.
pub struct Change<'a> {
    pub action: &'static str,
    pub target: String,
    pub body: &'a [u8],
}

/// Performs `work` once for the caller's key and answers with its outcome (or the kept one).
pub async fn perform<Fut>(
    deps: &Deps,
    caller: &Caller,
    headers: &HeaderMap,
    change: Change<'_>,
    work: Fut,
) -> Result<Response, Problem>
where
    Fut: Future<Output = Result<(StatusCode, Value), Problem>>,
{
    let key = idempotency_key(
        headers
            .get("idempotency-key")
            .map(|value| value.to_str().unwrap_or("\u{0}")),
    )
    .map_err(|err| Problem::bad_request(err.to_string()))?;
    let print = fingerprint(change.action, &change.target, change.body);
    let claimed = sqlx::query_file_scalar!("sql/idempotency/claim.sql", caller.subject, key, print)
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?
        .is_some();
    if !claimed {
        return earlier(deps, caller, key, &print).await;
    }

    let (status, answer) = match work.await {
        Ok((status, answer)) => (status, answer),
        Err(problem) => {
            let status =
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            if status.is_server_error() {
                // Worth a retry: the key is given back, the attempt still audited.
                let released =
                    sqlx::query_file!("sql/idempotency/release.sql", caller.subject, key)
                        .execute(&deps.db)
                        .await;
                if let Err(err) = released {
                    tracing::warn!(error = %err, "idempotency key not released; it frees itself in a minute");
                }
                audit(deps, caller, key, &change, status).await?;
                return Err(problem);
            }
            (
                status,
                serde_json::to_value(&problem).unwrap_or(Value::Null),
            )
        }
    };
    let mut tx = deps.db.begin().await.map_err(classify)?;
    sqlx::query_file!(
        "sql/idempotency/answer.sql",
        caller.subject,
        key,
        i16::try_from(status.as_u16()).unwrap_or(i16::MAX),
        answer,
    )
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    write_audit(&mut tx, caller, key, &change, status).await?;
    tx.commit().await.map_err(classify)?;
    Ok(answered(status, &answer, false))
}

/// The answer to a key already claimed.
async fn earlier(
    deps: &Deps,
    caller: &Caller,
    key: &str,
    print: &str,
) -> Result<Response, Problem> {
    let row = sqlx::query_file!("sql/idempotency/read.sql", caller.subject, key)
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?;
    let Some(row) = row else {
        // Released between the claim and the read: the client retries.
        return Err(Problem::conflict(
            "a request with this Idempotency-Key just failed; retry it",
        ));
    };
    if row.fingerprint != print {
        return Err(Problem::invalid(
            "this Idempotency-Key was used for another request",
        ));
    }
    match (row.status, row.answer) {
        (Some(status), Some(answer)) => {
            let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
                .unwrap_or(StatusCode::OK);
            Ok(answered(status, &answer, true))
        }
        _ => Err(Problem::conflict(
            "a request with this Idempotency-Key is in progress",
        )),
    }
}

fn answered(status: StatusCode, answer: &Value, replayed: bool) -> Response {
    let mut response = json(status, answer);
    if status.is_client_error() || status.is_server_error() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
    }
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response.into_response()
}

async fn audit(
    deps: &Deps,
    caller: &Caller,
    key: &str,
    change: &Change<'_>,
    status: StatusCode,
) -> Result<(), Problem> {
    let mut conn = deps.db.acquire().await.map_err(classify)?;
    write_audit(&mut conn, caller, key, change, status).await
}

async fn write_audit(
    conn: &mut sqlx::PgConnection,
    caller: &Caller,
    key: &str,
    change: &Change<'_>,
    status: StatusCode,
) -> Result<(), Problem> {
    // The body as sent when it is JSON (a reason, a date), else nothing: it was refused.
    let detail: Value = serde_json::from_slice(change.body).unwrap_or(Value::Null);
    sqlx::query_file!(
        "sql/idempotency/audit.sql",
        caller.subject,
        change.action,
        change.target,
        caller.request_id,
        key,
        i16::try_from(status.as_u16()).unwrap_or(i16::MAX),
        serde_json::json!({ "body": detail }),
    )
    .execute(conn)
    .await
    .map_err(classify)?;
    tracing::info!(caller = %caller.subject, request_id = %caller.request_id, action = change.action, target = %change.target, status = status.as_u16(), "change audited");
    Ok(())
}
