//! TOONPICK's stored results for the console: a week's analysis (weekly-analysis) and a
//! reader's served recommendations with their reasons (recommendations).

use std::sync::Arc;

use adapters::db::classify;
use adapters::http::{Params, Problem, QueryOf, json};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::{Deps, Reader};

/// One week's analysis (Monday to Sunday, Asia/Seoul).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WeeklyAnalysis {
    pub week_start: NaiveDate,
    /// Per genre: genre, reads, readers, share, change (on the week before; null when new).
    #[schema(value_type = Vec<Object>)]
    pub genres: Value,
    /// Titles that gained most reads: webtoon_id, title, reads, previous_reads, change.
    #[schema(value_type = Vec<Object>)]
    pub rising: Value,
    /// Titles that lost most reads, as `rising`.
    #[schema(value_type = Vec<Object>)]
    pub falling: Value,
    /// Per day: day, readers (active), reads.
    #[schema(value_type = Vec<Object>)]
    pub daily: Value,
    pub weekly_active: i32,
    pub reads: i64,
    pub reads_per_reader: f64,
    pub computed_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WeekQuery {
    /// Any day of the week wanted (YYYY-MM-DD); the latest analysed week without one.
    pub week: Option<NaiveDate>,
}

#[utoipa::path(get, path = "/admin/insights/weekly", tag = "insights",
    params(WeekQuery),
    responses((status = 200, description = "The week's analysis; 404 when it has not been analysed", body = WeeklyAnalysis)))]
pub async fn weekly(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    QueryOf(query): QueryOf<WeekQuery>,
) -> Result<Response, Problem> {
    let week = query.week.map(domain::analysis::week_start);
    let row = sqlx::query_file!("sql/weekly_analysis.sql", week)
        .fetch_optional(&deps.db)
        .await
        .map_err(classify)?
        .ok_or_else(Problem::not_found)?;
    let analysis = WeeklyAnalysis {
        week_start: row.week_start,
        genres: row.genres,
        rising: row.rising,
        falling: row.falling,
        daily: row.daily,
        weekly_active: row.weekly_active,
        reads: row.reads,
        reads_per_reader: row.reads_per_reader,
        computed_at: row.computed_at,
    };
    Ok(json(StatusCode::OK, &analysis))
}

/// A reader's served recommendations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReaderRecommendations {
    pub user_id: i64,
    pub set_id: i64,
    /// The day the set was generated for.
    pub target_date: NaiveDate,
    /// The reader's A/B arm.
    pub variant: String,
    pub items: Vec<Recommendation>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    pub rank: i16,
    pub webtoon_id: i64,
    pub title: String,
    pub score: f32,
    /// similar, genre, author or popular.
    pub reason: String,
    /// For `similar`: the title the reader read whose readers read this one.
    pub because_id: Option<i64>,
    pub because_title: Option<String>,
    /// For `genre` and `author`: which.
    pub because: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReaderPath {
    /// The reader's user id.
    #[param(minimum = 1)]
    pub user_id: i64,
}

#[utoipa::path(get, path = "/admin/recommendations/{user_id}", tag = "insights",
    params(ReaderPath),
    responses((status = 200, description = "The reader's list in the served set, best first; 404 when they have none", body = ReaderRecommendations)))]
pub async fn reader(
    State(deps): State<Arc<Deps>>,
    _: Reader,
    Params(path): Params<ReaderPath>,
) -> Result<Response, Problem> {
    let rows = sqlx::query_file!("sql/reader_recommendations.sql", path.user_id)
        .fetch_all(&deps.db)
        .await
        .map_err(classify)?;
    let first = rows.first().ok_or_else(Problem::not_found)?;
    let answer = ReaderRecommendations {
        user_id: path.user_id,
        set_id: first.set_id,
        target_date: first.target_date,
        variant: first.variant.clone(),
        items: rows
            .into_iter()
            .map(|row| Recommendation {
                rank: row.rank,
                webtoon_id: row.webtoon_id,
                title: row.title,
                score: row.score,
                reason: row.reason,
                because_id: row.because_id,
                because_title: row.because_title,
                because: row.because,
            })
            .collect(),
    };
    Ok(json(StatusCode::OK, &answer))
}
