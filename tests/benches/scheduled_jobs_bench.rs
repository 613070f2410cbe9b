//! `make bench`: the scheduled jobs at production volume against local PostgreSQL.
//!
//! - daily-rollup over 100,000 campaigns × 24 hourly windows (2.4 M rows) with 2.4 M raw events
//!   to check them against and the month's earlier daily rows behind them, beside the target
//!   (≤ 30 s) and the seed's Spring Batch job (about 30 minutes).
//! - retention over 10 M raw events spread across the last 12 months: the first run (dropping
//!   the months past 90 days and pseudonymising 60 days of events) and the next day's run.
//!
//! Figures go to stdout and target/bench/results.json; there is no pass/fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{Datelike as _, Utc};
use domain::calendar::{add_days, kst_date, kst_day_start, month_of, sub_days};
use domain::retention::Cutoffs;
use integration_tests::{BenchResult, TestDb, db_config, record_bench};
use sqlx::PgPool;

const CAMPAIGNS: i64 = 100_000;
const ROLLUP_TARGET_SECS: f64 = 30.0;
const SEED_JOB_SECS: f64 = 30.0 * 60.0;
const RAW_EVENTS: i64 = 10_000_000;

/// A pool on the test database whose statements may run as long as a job's do in Lambda.
fn job_pool(db: &TestDb) -> PgPool {
    let config = adapters::config::DatabaseConfig {
        statement_timeout: Duration::from_secs(1800),
        ..db_config()
    };
    adapters::db::pool_with(&config, db.options.clone())
}

async fn timed<T, E: Into<anyhow::Error>>(
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<(T, f64)> {
    let started = Instant::now();
    let out = work.await.map_err(Into::into)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("  {what}: {secs:.1} s");
    Ok((out, secs))
}

async fn bench_daily_rollup(db: &PgPool) -> anyhow::Result<Vec<BenchResult>> {
    // A recent day (its raw events are inside retention) with earlier days in its month.
    let day = sub_days(kst_date(Utc::now()), 2);
    eprintln!("daily-rollup: seeding {CAMPAIGNS} campaigns × 24 hourly windows for {day}");
    let ((), seed) = timed("seed", async {
        // One impression an hour per campaign, in the windows and in the raw events, except
        // that every hundredth campaign lost two hours of raw events (a review item each).
        sqlx::query(
            "INSERT INTO performance_metrics (campaign_id, advertiser_id, window_size,
                 window_start, window_date, impressions, clicks, conversions, cost_micros)
             SELECT c, c % 5000, '1h', $2 + h * INTERVAL '1 hour', $1, 1, 0, 0, 0
             FROM generate_series(1, 100000) AS c, generate_series(0, 23) AS h",
        )
        .bind(day)
        .bind(kst_day_start(day))
        .execute(db)
        .await?;
        sqlx::query(
            "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id,
                                    event_type, device_id, ip)
             SELECT gen_random_uuid(), $1 + h * INTERVAL '1 hour' + (c % 3600) * INTERVAL '1 second',
                    c, c % 5000, 'impression', 'device-' || c, '198.51.100.1'
             FROM generate_series(0, 23) AS h, generate_series(1, 100000) AS c
             WHERE NOT (c % 100 = 0 AND h < 2)",
        )
        .bind(kst_day_start(day))
        .execute(db)
        .await?;
        // The month's earlier days, rolled up already.
        sqlx::query(
            "INSERT INTO campaign_daily_stats (campaign_id, stat_date, advertiser_id,
                 impressions, clicks, conversions, cost_micros, hours)
             SELECT c, d, c % 5000, 24, 0, 0, 0, 24
             FROM generate_series(1, 100000) AS c,
                  (SELECT $1::date + n AS d FROM generate_series(0, $2 - 1) AS n) AS days",
        )
        .bind(month_of(day))
        .bind(i32::try_from(day.day0())?)
        .execute(db)
        .await?;
        sqlx::query("VACUUM ANALYZE").execute(db).await?;
        anyhow::Ok(())
    })
    .await?;
    let prior_days = i64::from(day.day()) - 1;
    eprintln!(
        "  seeded 2.4 M windows, {} raw events and {} earlier daily rows in {seed:.0} s",
        2_400_000 - 2 * (CAMPAIGNS / 100),
        prior_days * CAMPAIGNS
    );

    let (first, first_secs) = timed("rollup", daily_rollup::roll_up(db, day)).await?;
    let (again, again_secs) = timed("re-run", daily_rollup::roll_up(db, day)).await?;
    anyhow::ensure!(
        first.daily_rows == CAMPAIGNS && first.hourly_rows == 24 * CAMPAIGNS,
        "rolled up {first:?}"
    );
    anyhow::ensure!(first.reviews_open == CAMPAIGNS / 100, "reviews {first:?}");
    anyhow::ensure!(again == first, "the re-run differs: {again:?}");

    println!("\ndaily-rollup: 100,000 campaigns × 24 hourly rows (2.4 M), {day}");
    println!(
        "  {:<34} {:>9} {:>14} {:>12} {:>14}",
        "run", "seconds", "hourly rows/s", "vs target", "vs seed job"
    );
    let mut results = Vec::new();
    for (run, secs) in [("first run", first_secs), ("re-run (same day)", again_secs)] {
        let rate = first.hourly_rows as f64 / secs;
        println!(
            "  {run:<34} {secs:>9.1} {rate:>14.0} {:>11.1}× {:>13.0}×",
            ROLLUP_TARGET_SECS / secs,
            SEED_JOB_SECS / secs
        );
        results.push(BenchResult {
            name: format!("daily-rollup 2.4M hourly rows, {run}"),
            unit: "seconds".to_owned(),
            value: secs,
            baselines: BTreeMap::from([
                ("target".to_owned(), ROLLUP_TARGET_SECS),
                ("seed job".to_owned(), SEED_JOB_SECS),
            ]),
        });
    }
    println!(
        "  (monthly rows: {}, review items: {}, {} earlier daily rows in the month)",
        first.monthly_rows,
        first.reviews_open,
        prior_days * CAMPAIGNS
    );
    Ok(results)
}

async fn bench_retention(db: &PgPool) -> anyhow::Result<Vec<BenchResult>> {
    let target = sub_days(kst_date(Utc::now()), 1);
    let cutoffs = Cutoffs::for_target(target);
    let first_day = sub_days(cutoffs.as_of, 365);
    eprintln!("retention: seeding {RAW_EVENTS} raw events from {first_day} to {target}");
    let ((), seed) = timed("seed", async {
        sqlx::query("SELECT ensure_ad_event_partitions($1, $2)")
            .bind(month_of(first_day))
            .bind(cutoffs.as_of)
            .execute(db)
            .await?;
        // Evenly over the year: one event every ~3.2 s, from 1,000 campaigns.
        sqlx::query(
            "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id,
                                    event_type, cost_micros, device_id, ip)
             SELECT gen_random_uuid(), $1 + ($2 - $1) / $3 * i, i % 1000, i % 100,
                    CASE WHEN i % 20 = 0 THEN 'click' ELSE 'impression' END,
                    CASE WHEN i % 20 = 0 THEN 150000 ELSE 0 END,
                    'device-' || (i % 500000), ('10.' || (i % 250) || '.' || (i % 199) || '.7')::inet
             FROM generate_series(0, $3 - 1) AS i",
        )
        .bind(kst_day_start(first_day))
        .bind(kst_day_start(cutoffs.as_of))
        .bind(RAW_EVENTS)
        .execute(db)
        .await?;
        sqlx::query("VACUUM ANALYZE ad_events").execute(db).await?;
        anyhow::Ok(())
    })
    .await?;
    eprintln!("  seeded in {seed:.0} s");

    let (first, first_secs) =
        timed("first run", retention::apply_to_db(db, &cutoffs, false)).await?;
    let next_cutoffs = Cutoffs::for_target(add_days(target, 1));
    let (next, next_secs) =
        timed("next day", retention::apply_to_db(db, &next_cutoffs, false)).await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ad_events")
        .fetch_one(db)
        .await?;

    println!(
        "\nretention: {RAW_EVENTS} raw events over 12 months, as of {}",
        cutoffs.as_of
    );
    println!(
        "  {:<34} {:>9} {:>11} {:>11} {:>13} {:>14}",
        "run", "seconds", "partitions", "deleted", "pseudonymised", "rows/s"
    );
    let mut results = Vec::new();
    for (run, removed, secs) in [
        ("first run (catch-up)", &first, first_secs),
        ("next day", &next, next_secs),
    ] {
        let touched = removed.raw_events_deleted + removed.pseudonymised;
        println!(
            "  {run:<34} {secs:>9.1} {:>11} {:>11} {:>13} {:>14.0}",
            removed.partitions_dropped.len(),
            removed.raw_events_deleted,
            removed.pseudonymised,
            touched as f64 / secs
        );
        results.push(BenchResult {
            name: format!("retention 10M raw events, {run}"),
            unit: "seconds".to_owned(),
            value: secs,
            baselines: BTreeMap::new(),
        });
    }
    println!("  ({left} raw events left inside the 90-day window)");
    Ok(results)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted = integration_tests::bench_filter();
    let mut results = Vec::new();
    if wanted("daily-rollup") {
        let db = TestDb::new().await?;
        results.extend(bench_daily_rollup(&job_pool(&db)).await?);
    }
    if wanted("retention") {
        let db = TestDb::new().await?;
        results.extend(bench_retention(&job_pool(&db)).await?);
    }
    let path = record_bench(&results)?;
    println!("figures written to {}", path.display());
    Ok(())
}
