//! daily-rollup (SPEC §3), 02:00 Asia/Seoul: yesterday's 1-hour windows (from
//! performance-metrics) become one daily row per campaign; the daily rows are checked against
//! the raw ad events, and a campaign that differs by 5 % or more opens a review item; the
//! month's daily rows become its monthly rows. Raw-event partitions are created months ahead.
//!
//! Everything is set-based and replaces the target day's (and month's) rows in one
//! transaction, so re-running a day gives the same final state, and a crash leaves the old rows.
//! Review items are announced once: the summary lists those not yet notified, then marks them.

use adapters::bootstrap::ScheduledJob;
use adapters::db;
use adapters::jobs::{JobRun, Reporter};
use chrono::{NaiveDate, Utc};
use domain::WorkerError;
use domain::calendar::{add_days, add_months, kst_date, kst_day_start, month_of, sub_days};
use domain::retention::Cutoffs;
use domain::rollup::{Totals, needs_review};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::{info, instrument, warn};

pub const JOB: &str = "daily-rollup";
/// Raw-event partitions kept ready this many months past the current one.
pub const PARTITIONS_AHEAD: u32 = 3;
/// Review items listed by name in the summary message (all are counted).
const LISTED_REVIEWS: usize = 50;

pub struct Deps {
    pub reporter: Reporter,
}

impl Deps {
    pub async fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            reporter: ScheduledJob::from_env().await?.reporter,
        })
    }
}

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
    let run = JobRun::start(JOB, payload)?;
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
    // From the current month on: re-running an old day must not recreate the partitions
    // retention dropped.
    let partitions_created: i32 = sqlx::query_scalar("SELECT ensure_ad_event_partitions($1, $2)")
        .bind(month_of(today))
        .bind(add_months(month_of(today.max(day)), PARTITIONS_AHEAD))
        .fetch_one(db)
        .await?;

    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM campaign_daily_stats WHERE stat_date = $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    let (daily_rows, hourly_rows): (i64, i64) = sqlx::query_as(
        "WITH rolled AS (
             INSERT INTO campaign_daily_stats
                 (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions,
                  cost_micros, hours)
             SELECT campaign_id, $1, max(advertiser_id), sum(impressions), sum(clicks),
                    sum(conversions), sum(cost_micros), count(*)
             FROM performance_metrics
             WHERE window_size = '1h' AND window_date = $1
             GROUP BY campaign_id
             HAVING greatest(sum(impressions), sum(clicks), sum(conversions), sum(cost_micros))
                    <= 9223372036854775807
             RETURNING hours)
         SELECT count(*), coalesce(sum(hours), 0)::bigint FROM rolled",
    )
    .bind(day)
    .fetch_one(&mut *tx)
    .await?;

    // Raw events are deleted after 90 days; an older day cannot be checked against them.
    let raw_checked = kst_day_start(day) >= Cutoffs::for_target(sub_days(today, 1)).raw_events;
    let (differing, reviews_open, reviews_resolved) = if raw_checked {
        check_against_raw(&mut tx, day).await?
    } else {
        warn!(%day, "raw events of this day are past retention: rollup not checked against them");
        (0, 0, 0)
    };

    sqlx::query("DELETE FROM campaign_monthly_stats WHERE month = $1")
        .bind(month)
        .execute(&mut *tx)
        .await?;
    let monthly_rows = sqlx::query(
        "INSERT INTO campaign_monthly_stats
             (campaign_id, month, advertiser_id, impressions, clicks, conversions, cost_micros, days)
         SELECT campaign_id, $1, max(advertiser_id), sum(impressions), sum(clicks),
                sum(conversions), sum(cost_micros), count(*)
         FROM campaign_daily_stats
         WHERE stat_date >= $1 AND stat_date < $2
         GROUP BY campaign_id
         HAVING greatest(sum(impressions), sum(clicks), sum(conversions), sum(cost_micros))
                <= 9223372036854775807",
    )
    .bind(month)
    .bind(add_months(month, 1))
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    let overflowing = review_overflows(&mut tx, day).await?;
    tx.commit().await?;

    let rollup = Rollup {
        partitions_created: i64::from(partitions_created),
        hourly_rows,
        daily_rows,
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
    type Row = (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);
    // Only campaigns that differ at all come back; usually none do.
    let rows: Vec<Row> = sqlx::query_as(
        "WITH raw AS (
             SELECT campaign_id, max(advertiser_id) AS advertiser_id,
                    count(*) FILTER (WHERE event_type = 'impression') AS impressions,
                    count(*) FILTER (WHERE event_type = 'click') AS clicks,
                    count(*) FILTER (WHERE event_type = 'conversion') AS conversions,
                    least(sum(cost_micros), 9223372036854775807)::bigint AS cost_micros
             FROM ad_events
             WHERE occurred_at >= $2 AND occurred_at < $3
             GROUP BY campaign_id),
         daily AS (SELECT * FROM campaign_daily_stats WHERE stat_date = $1),
         joined AS (
             SELECT coalesce(d.campaign_id, r.campaign_id) AS campaign_id,
                    coalesce(d.advertiser_id, r.advertiser_id) AS advertiser_id,
                    coalesce(d.impressions, 0) AS d_impressions, coalesce(d.clicks, 0) AS d_clicks,
                    coalesce(d.conversions, 0) AS d_conversions,
                    coalesce(d.cost_micros, 0) AS d_cost,
                    coalesce(r.impressions, 0) AS r_impressions, coalesce(r.clicks, 0) AS r_clicks,
                    coalesce(r.conversions, 0) AS r_conversions,
                    coalesce(r.cost_micros, 0) AS r_cost
             FROM daily d FULL JOIN raw r ON r.campaign_id = d.campaign_id)
         SELECT * FROM joined
         WHERE (d_impressions, d_clicks, d_conversions, d_cost)
               <> (r_impressions, r_clicks, r_conversions, r_cost)",
    )
    .bind(day)
    .bind(kst_day_start(day))
    .bind(kst_day_start(add_days(day, 1)))
    .fetch_all(&mut **tx)
    .await?;

    let mut reviews = ReviewColumns::default();
    for (campaign, advertiser, di, dc, dv, dm, ri, rc, rv, rm) in &rows {
        let rolled_up = Totals {
            impressions: *di,
            clicks: *dc,
            conversions: *dv,
            cost_micros: *dm,
        };
        let raw = Totals {
            impressions: *ri,
            clicks: *rc,
            conversions: *rv,
            cost_micros: *rm,
        };
        if let Some(difference) = needs_review(&rolled_up, &raw) {
            reviews.campaign.push(*campaign);
            reviews.advertiser.push(*advertiser);
            reviews.metric.push(difference.metric.to_owned());
            reviews.rolled_up.push(difference.rolled_up);
            reviews.raw.push(difference.raw);
            reviews.ratio.push(difference.ratio);
        }
    }

    sqlx::query(
        "INSERT INTO rollup_reviews
             (stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::bigint[],
                                  $6::bigint[], $7::float8[])
         ON CONFLICT (stat_date, campaign_id) DO UPDATE SET
             advertiser_id = EXCLUDED.advertiser_id, metric = EXCLUDED.metric,
             rolled_up = EXCLUDED.rolled_up, raw = EXCLUDED.raw,
             difference_ratio = EXCLUDED.difference_ratio, status = 'open'",
    )
    .bind(day)
    .bind(&reviews.campaign)
    .bind(&reviews.advertiser)
    .bind(&reviews.metric)
    .bind(&reviews.rolled_up)
    .bind(&reviews.raw)
    .bind(&reviews.ratio)
    .execute(&mut **tx)
    .await?;
    let resolved = sqlx::query(
        "UPDATE rollup_reviews SET status = 'resolved'
         WHERE stat_date = $1 AND status = 'open' AND campaign_id <> ALL($2)",
    )
    .bind(day)
    .bind(&reviews.campaign)
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
    let overflowing = sqlx::query(
        "WITH sums AS (
             SELECT campaign_id, max(advertiser_id) AS advertiser_id, 'day' AS period,
                    sum(impressions) AS impressions, sum(clicks) AS clicks,
                    sum(conversions) AS conversions, sum(cost_micros) AS cost_micros
               FROM performance_metrics
              WHERE window_size = '1h' AND window_date = $1
              GROUP BY campaign_id
             UNION ALL
             SELECT campaign_id, max(advertiser_id), 'month', sum(impressions), sum(clicks),
                    sum(conversions), sum(cost_micros)
               FROM campaign_daily_stats
              WHERE stat_date >= $2 AND stat_date < $3
              GROUP BY campaign_id),
         over AS (
             SELECT DISTINCT ON (campaign_id) campaign_id, advertiser_id,
                    format('%s: the %s sums past bigint',
                           CASE WHEN impressions > 9223372036854775807 THEN 'impressions'
                                WHEN clicks > 9223372036854775807 THEN 'clicks'
                                WHEN conversions > 9223372036854775807 THEN 'conversions'
                                ELSE 'cost_micros' END,
                           period) AS metric
               FROM sums
              WHERE greatest(impressions, clicks, conversions, cost_micros) > 9223372036854775807
              ORDER BY campaign_id, period)
         INSERT INTO rollup_reviews
             (stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio)
         SELECT $1, campaign_id, advertiser_id, metric, 0, 0, 1.0 FROM over
         ON CONFLICT (stat_date, campaign_id) DO UPDATE SET
             advertiser_id = EXCLUDED.advertiser_id, metric = EXCLUDED.metric,
             rolled_up = EXCLUDED.rolled_up, raw = EXCLUDED.raw,
             difference_ratio = EXCLUDED.difference_ratio, status = 'open',
             -- A new finding about the campaign's day: announced even if the raw check's was.
             notified_at = CASE WHEN rollup_reviews.metric = EXCLUDED.metric
                                THEN rollup_reviews.notified_at END",
    )
    .bind(day)
    .bind(month)
    .bind(add_months(month, 1))
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
    let rows: Vec<(NaiveDate, i64, i64, String, i64, i64, f64)> = sqlx::query_as(
        "SELECT stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio
         FROM rollup_reviews
         WHERE notified_at IS NULL AND status = 'open'
         ORDER BY difference_ratio DESC, stat_date, campaign_id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(date, campaign, advertiser, metric, rolled_up, raw, ratio)| {
                let item = json!({
                    "date": date, "campaign_id": campaign, "advertiser_id": advertiser,
                    "metric": metric, "rolled_up": rolled_up, "raw": raw,
                    "difference_pct": (ratio * 1000.0).round() / 10.0,
                });
                ((date, campaign), item)
            },
        )
        .collect())
}

async fn mark_notified(
    db: &PgPool,
    reviews: &[((NaiveDate, i64), Value)],
) -> Result<(), sqlx::Error> {
    let (dates, campaigns): (Vec<NaiveDate>, Vec<i64>) =
        reviews.iter().map(|(key, _)| *key).unzip();
    sqlx::query(
        "UPDATE rollup_reviews r SET notified_at = now()
         FROM UNNEST($1::date[], $2::bigint[]) AS n(stat_date, campaign_id)
         WHERE r.stat_date = n.stat_date AND r.campaign_id = n.campaign_id
           AND r.notified_at IS NULL",
    )
    .bind(&dates)
    .bind(&campaigns)
    .execute(db)
    .await?;
    Ok(())
}
