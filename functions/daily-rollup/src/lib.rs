//! daily-rollup (SPEC §3), 02:00 Asia/Seoul: yesterday's 1-hour windows (from
//! performance-metrics) become one daily row per campaign; the daily rows are checked against
//! the raw ad events, and a campaign that differs by 5 % or more opens a review item; the
//! month's daily rows become its monthly rows. Raw-event partitions are created months ahead.
//!
//! Everything is set-based and replaces the target day's (and month's) rows in one
//! transaction, so re-running a day gives the same final state, and a crash leaves the old rows.
//! Review items are announced once: the summary lists those not yet notified, then marks them.

use adapters::db;
use adapters::jobs::JobRun;
use chrono::{NaiveDate, Utc};
use domain::WorkerError;
use domain::calendar::{add_days, add_months, kst_date, kst_day_start, month_of};
use domain::rollup::{Review, Totals, needs_review, partitions_to_ensure, raw_events_kept};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::{info, instrument, warn};

pub const JOB: &str = "daily-rollup";
/// Review items listed by name in the summary message (all are counted).
const LISTED_REVIEWS: usize = 50;

/// Its work is all in the database: the run reporter is all it needs.
pub use adapters::bootstrap::DatabaseJob as Deps;

/// What one rollup changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    pub partitions_created: i64,
    pub hourly_rows: i64,
    pub daily_rows: i64,
    pub monthly_rows: i64,
    /// Campaigns whose day differs at all from the raw events.
    pub differing: i64,
    /// Campaigns left out because a day's or the month's sum does not fit a `bigint`; each
    /// has an open review item saying which.
    pub overflowing: i64,
    pub reviews_open: i64,
    pub reviews_resolved: i64,
    /// False when the day's raw events are past their retention and cannot be compared.
    pub raw_checked: bool,
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    JobRun::execute(JOB, payload, &deps.reporter, |run| run_job(run, deps)).await
}

async fn run_job(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let db = &deps.reporter.db;
    let rollup = roll_up(db, run.target_date).await.map_err(db::classify)?;
    let unnotified = unnotified_reviews(db).await.map_err(db::classify)?;
    let listed: Vec<&Value> = unnotified
        .iter()
        .map(|(_, v)| v)
        .take(LISTED_REVIEWS)
        .collect();
    let counts = [
        ("hourly_rows", rollup.hourly_rows),
        ("daily_rows", rollup.daily_rows),
        ("monthly_rows", rollup.monthly_rows),
        ("differing_campaigns", rollup.differing),
        ("overflowing_campaigns", rollup.overflowing),
        ("reviews_open", rollup.reviews_open),
        ("reviews_resolved", rollup.reviews_resolved),
        ("new_reviews", unnotified.len() as i64),
        ("partitions_created", rollup.partitions_created),
    ];
    let details = json!({
        "raw_checked": rollup.raw_checked,
        "new_reviews": listed,
    });
    let summary = run.report(&deps.reporter, &counts, details).await?;
    // Marked only once the operators have the message: a failed publish leaves them for the
    // retry or the next run.
    mark_notified(db, &unnotified).await.map_err(db::classify)?;
    Ok(summary)
}

/// Rolls up one day. Public for the benchmark.
#[instrument(skip(db))]
pub async fn roll_up(db: &PgPool, day: NaiveDate) -> Result<Rollup, sqlx::Error> {
    let month = month_of(day);
    let today = kst_date(Utc::now());
    let (first, last) = partitions_to_ensure(day, today);
    let partitions_created = sqlx::query_file_scalar!("sql/ensure_partitions.sql", first, last)
        .fetch_one(db)
        .await?;

    let mut tx = db.begin().await?;
    sqlx::query_file!("sql/clear_daily.sql", day)
        .execute(&mut *tx)
        .await?;
    let rolled = sqlx::query_file!("sql/roll_up_day.sql", day)
        .fetch_one(&mut *tx)
        .await?;

    let raw_checked = raw_events_kept(day, today);
    let (differing, reviews_open, reviews_resolved) = if raw_checked {
        check_against_raw(&mut tx, day).await?
    } else {
        warn!(%day, "raw events of this day are past retention: rollup not checked against them");
        (0, 0, 0)
    };

    sqlx::query_file!("sql/clear_monthly.sql", month)
        .execute(&mut *tx)
        .await?;
    let monthly_rows = sqlx::query_file!("sql/roll_up_month.sql", month, add_months(month, 1))
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
    let overflowing = review_overflows(&mut tx, day).await?;
    tx.commit().await?;

    let rollup = Rollup {
        partitions_created: i64::from(partitions_created),
        hourly_rows: rolled.hourly_rows,
        daily_rows: rolled.daily_rows,
        monthly_rows,
        differing,
        overflowing,
        reviews_open,
        reviews_resolved,
        raw_checked,
    };
    info!(%day, ?rollup, "rolled up");
    Ok(rollup)
}

/// Compares the day's rows with the raw events; opens (or updates) a review item for each
/// campaign 5 % or more off, and resolves the day's items that no longer are.
async fn check_against_raw(
    tx: &mut Transaction<'_, Postgres>,
    day: NaiveDate,
) -> Result<(i64, i64, i64), sqlx::Error> {
    // Only campaigns that differ at all come back; usually none do.
    let rows = sqlx::query_file!(
        "sql/compare_with_raw.sql",
        day,
        kst_day_start(day),
        kst_day_start(add_days(day, 1)),
    )
    .fetch_all(&mut **tx)
    .await?;

    let mut reviews = ReviewColumns::default();
    for row in &rows {
        let rolled_up = Totals {
            impressions: row.d_impressions,
            clicks: row.d_clicks,
            conversions: row.d_conversions,
            cost_micros: row.d_cost,
        };
        let raw = Totals {
            impressions: row.r_impressions,
            clicks: row.r_clicks,
            conversions: row.r_conversions,
            cost_micros: row.r_cost,
        };
        if let Some(difference) = needs_review(&rolled_up, &raw) {
            reviews.campaign.push(row.campaign_id);
            reviews.advertiser.push(row.advertiser_id);
            reviews.metric.push(difference.metric.to_owned());
            reviews.rolled_up.push(difference.rolled_up);
            reviews.raw.push(difference.raw);
            reviews.ratio.push(difference.ratio);
        }
    }

    sqlx::query_file!(
        "sql/open_reviews.sql",
        day,
        &reviews.campaign,
        &reviews.advertiser,
        &reviews.metric,
        &reviews.rolled_up,
        &reviews.raw,
        &reviews.ratio,
    )
    .execute(&mut **tx)
    .await?;
    let resolved = sqlx::query_file!("sql/resolve_reviews.sql", day, &reviews.campaign)
        .execute(&mut **tx)
        .await?
        .rows_affected() as i64;
    Ok((rows.len() as i64, reviews.campaign.len() as i64, resolved))
}

/// Opens a review item for each campaign whose day (from its hourly windows) or month (from
/// its daily rows) sums past a `bigint` (9223372036854775807): such a campaign gets no daily
/// or monthly row, and every other campaign rolls up as usual. Runs after the raw check, whose
/// item for the campaign it replaces.
async fn review_overflows(
    tx: &mut Transaction<'_, Postgres>,
    day: NaiveDate,
) -> Result<i64, sqlx::Error> {
    let month = month_of(day);
    let overflowing =
        sqlx::query_file!("sql/review_overflows.sql", day, month, add_months(month, 1))
            .execute(&mut **tx)
            .await?
            .rows_affected() as i64;
    if overflowing > 0 {
        warn!(%day, overflowing, "campaigns whose sums pass bigint left out of the rollup");
    }
    Ok(overflowing)
}

#[derive(Default)]
struct ReviewColumns {
    campaign: Vec<i64>,
    advertiser: Vec<i64>,
    metric: Vec<String>,
    rolled_up: Vec<i64>,
    raw: Vec<i64>,
    ratio: Vec<f64>,
}

/// Open review items the operators have not been told about, of any day (a failed
/// notification is caught up by the next run), largest difference first.
async fn unnotified_reviews(db: &PgPool) -> Result<Vec<((NaiveDate, i64), Value)>, sqlx::Error> {
    let rows = sqlx::query_file_as!(Review, "sql/unnotified_reviews.sql")
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|review| {
            (
                (review.stat_date, review.campaign_id),
                review.summary_item(),
            )
        })
        .collect())
}

async fn mark_notified(
    db: &PgPool,
    reviews: &[((NaiveDate, i64), Value)],
) -> Result<(), sqlx::Error> {
    let (dates, campaigns): (Vec<NaiveDate>, Vec<i64>) =
        reviews.iter().map(|(key, _)| *key).unzip();
    sqlx::query_file!("sql/mark_notified.sql", &dates, &campaigns)
        .execute(db)
        .await?;
    Ok(())
}
