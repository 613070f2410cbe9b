//! Reader activity as TOONPICK's weekly analysis and monthly report read it: episode reads per
//! title and per genre over a period and the one before it, and active readers per day and over
//! the period. Periods are half-open instants (Asia/Seoul day starts).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

/// A period and the one before it: `[previous, start)` and `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    pub previous: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One title's reads in the period and the one before.
#[derive(Debug, Clone)]
pub struct TitleReads {
    pub webtoon_id: i64,
    pub title: String,
    pub reads: i64,
    pub previous_reads: i64,
}

/// (genre, reads, readers, reads in the period before).
pub type GenreReads = (String, i64, i64, i64);

/// (day, active readers, reads).
pub type DayActivity = (NaiveDate, i64, i64);

pub async fn title_reads(db: &PgPool, p: Periods) -> Result<Vec<TitleReads>, sqlx::Error> {
    let rows = sqlx::query_file!("sql/activity/title_reads.sql", p.previous, p.start, p.end)
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| TitleReads {
            webtoon_id: r.webtoon_id,
            title: r.title,
            reads: r.reads,
            previous_reads: r.previous_reads,
        })
        .collect())
}

pub async fn genre_reads(db: &PgPool, p: Periods) -> Result<Vec<GenreReads>, sqlx::Error> {
    let rows = sqlx::query_file!("sql/activity/genre_reads.sql", p.previous, p.start, p.end)
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.genre, r.reads, r.readers, r.previous_reads))
        .collect())
}

/// Every day of `[from, to)` that had activity, in order.
pub async fn daily(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DayActivity>, sqlx::Error> {
    let rows = sqlx::query_file!("sql/activity/daily_activity.sql", from, to)
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.day, r.readers, r.reads))
        .collect())
}

/// Active readers and reads over `[from, to)`.
pub async fn period(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query_file!("sql/activity/period_activity.sql", from, to)
        .fetch_one(db)
        .await?;
    Ok((row.readers, row.reads))
}
