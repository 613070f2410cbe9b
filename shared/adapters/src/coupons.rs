//! Reads of recorded coupon outcomes that more than one program needs (the operators' tool
//! today, the admin API next), kept apart from the function that writes them.

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::coupon::Outcome;
use serde::Serialize;
use sqlx::PgPool;

/// What a client reads back for a request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub request_id: String,
    pub coupon_id: i64,
    pub user_id: i64,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub decided_at: DateTime<Utc>,
}

/// The recorded outcome of a request, if it has been decided. A request id the database
/// cannot even compare (a NUL byte, say) is the caller's mistake: refused, not retryable.
pub async fn lookup(db: &PgPool, request_id: &str) -> Result<Option<Answer>, WorkerError> {
    let row = sqlx::query_file!("sql/coupon_outcome.sql", request_id)
        .fetch_optional(db)
        .await
        .map_err(crate::db::classify)?;
    row.map(|row| {
        Ok(Answer {
            request_id: request_id.to_owned(),
            coupon_id: row.coupon_id,
            user_id: row.user_id,
            outcome: Outcome::parse(&row.outcome).ok_or_else(|| {
                WorkerError::retryable(anyhow!("unknown outcome {:?}", row.outcome))
            })?,
            reason: row.reason,
            decided_at: row.decided_at,
        })
    })
    .transpose()
}
