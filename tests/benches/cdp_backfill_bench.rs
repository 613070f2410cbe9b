//! `make bench`: the CDP backfill on the real stack (its own database, jobs queue and bucket).
//!
//! - `cdp-orchestrator-tick-*`: one tick. First sight of 1,000 NEW advertisers: 24,000 months
//!   created and 1,000 queued (moto's SQS, not the tick, limits this to 1,000). Then 10,000 NEW
//!   advertisers each with a month in flight, and 10,000 EXISTING ones each with a month of
//!   daily rows and nothing changed: the steady states. The target is ≤ 2 s.
//! - `cdp-worker-audience-*`: one month of 1,000,000 audience rows (a million devices), read,
//!   pseudonymised, written as Parquet and put in S3. Rows/s (target ≥ 100,000) and the
//!   process's peak RSS while the month runs (target ≤ 128 MB).
//! - `cdp-backfill-1000-advertisers`: 1,000 NEW advertisers × 24 months, plus their current
//!   month, through the SQS event source (`local_triggers::sqs`, the template's batch of 2 and
//!   5 pollers) to the worker's real handler in this process. Wall time, beside what the seed's
//!   pool would need: one month per advertiser per 5-minute tick, so at least 24 ticks.
//!
//! Figures go to stdout and target/bench/results.json; there is no pass/fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Utc;
use domain::backfill::{backfill_months, current_month};
use domain::calendar::{kst_date, kst_day_start, sub_days};
use integration_tests::{
    BenchResult, Cdp, bench_filter, invoke_endpoint, peak_rss_mib, record_bench, reset_peak_rss,
};
use local_triggers::invoke::Invoker;
use local_triggers::template::SqsSource;
use serde_json::{Value, json};

const TICK_ADVERTISERS: i64 = 10_000;
const FIRST_SIGHT_ADVERTISERS: i64 = 1_000;
const AUDIENCE_ROWS: i64 = 1_000_000;
const BACKFILL_ADVERTISERS: i64 = 1_000;
/// The seed's orchestrator period.
const SEED_TICK_SECS: f64 = 300.0;

/// A connection for setting a benchmark up: its bulk inserts run longer than the test pool's
/// statement timeout allows.
async fn setup(cdp: &Cdp) -> anyhow::Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut conn = cdp.db.pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    Ok(conn)
}

async fn timed_tick(cdp: &Cdp) -> anyhow::Result<(f64, Value)> {
    let started = Instant::now();
    let summary = cdp.run("tick").await?;
    Ok((started.elapsed().as_secs_f64(), summary))
}

async fn tick_bench(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let target = [("target", 2.0)];
    let today = kst_date(Utc::now());
    // First sight of NEW advertisers: their months created, the oldest queued. 1,000 of them:
    // 10,000 sends at once kept moto's SQS busy for minutes: that would measure moto.
    let cdp = Cdp::new().await?;
    let mut db = setup(&cdp).await?;
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name)
         SELECT a, 'advertiser ' || a FROM generate_series(1, $1) AS a",
    )
    .bind(FIRST_SIGHT_ADVERTISERS)
    .execute(&mut *db)
    .await?;
    let (first, summary) = timed_tick(&cdp).await?;
    anyhow::ensure!(summary["queued"] == FIRST_SIGHT_ADVERTISERS, "{summary}");
    results.push(BenchResult::new(
        "cdp-orchestrator-tick-1000-new-first-sight",
        "s",
        first,
        &target,
    ));

    // 10,000 NEW advertisers mid-backfill, each with its oldest month in flight.
    let cdp = Cdp::new().await?;
    let mut db = setup(&cdp).await?;
    let months = backfill_months(today);
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name, backfill_start_month)
         SELECT a, 'advertiser ' || a, $2 FROM generate_series(1, $1) AS a",
    )
    .bind(TICK_ADVERTISERS)
    .bind(months[0])
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, claim_token, queued_at)
         SELECT a, m, CASE WHEN m = $2 THEN 'QUEUED' ELSE 'PENDING' END,
                CASE WHEN m = $2 THEN gen_random_uuid() END, CASE WHEN m = $2 THEN now() END
           FROM generate_series(1, $1) AS a, unnest($3::date[]) AS m",
    )
    .bind(TICK_ADVERTISERS)
    .bind(months[0])
    .bind(&months)
    .execute(&mut *db)
    .await?;
    sqlx::query("ANALYZE cdp_months").execute(&mut *db).await?;
    let (waiting, summary) = timed_tick(&cdp).await?;
    anyhow::ensure!(summary["waiting"] == TICK_ADVERTISERS, "{summary}");
    results.push(BenchResult::new(
        "cdp-orchestrator-tick-10000-in-flight",
        "s",
        waiting,
        &target,
    ));
    // The steady state: 10,000 EXISTING advertisers, each with a campaign's daily rows for its
    // current month, the month done and unchanged since.
    let cdp = Cdp::new().await?;
    let mut db = setup(&cdp).await?;
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name, advertiser_type, backfill_completed)
         SELECT a, 'advertiser ' || a, 'EXISTING', true FROM generate_series(1, $1) AS a",
    )
    .bind(TICK_ADVERTISERS)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO campaign_daily_stats
             (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions, cost_micros, hours, rolled_up_at)
         SELECT a * 10, d::date, a, 1000, 50, 5, 10000000, 24, now() - INTERVAL '1 hour'
           FROM generate_series(1, $1) AS a,
                generate_series($2::date, $3::date, INTERVAL '1 day') AS d",
    )
    .bind(TICK_ADVERTISERS)
    .bind(current_month(today))
    .bind(sub_days(today, 1))
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, claim_token, started_at, completed_at)
         SELECT advertiser_id, $1, 'COMPLETED', gen_random_uuid(), now(), now() FROM advertisers",
    )
    .bind(current_month(today))
    .execute(&mut *db)
    .await?;
    for table in [
        "ANALYZE campaign_daily_stats",
        "ANALYZE cdp_months",
        "ANALYZE advertisers",
    ] {
        sqlx::query(table).execute(&mut *db).await?;
    }
    let (steady, summary) = timed_tick(&cdp).await?;
    anyhow::ensure!(summary["idle"] == TICK_ADVERTISERS, "{summary}");
    results.push(BenchResult::new(
        "cdp-orchestrator-tick-10000-existing-unchanged",
        "s",
        steady,
        &target,
    ));
    Ok(())
}

async fn worker_bench(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let mut db = setup(&cdp).await?;
    cdp.advertiser(1, "EXISTING").await?;
    let yesterday = sub_days(kst_date(Utc::now()), 1);
    sqlx::query(
        "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type, cost_micros, device_id)
         SELECT gen_random_uuid(), $1 + make_interval(secs => i / 100.0), 10, 1,
                CASE WHEN i % 20 = 0 THEN 'click' ELSE 'impression' END, 1200, 'device-' || i
           FROM generate_series(1, $2) AS i",
    )
    .bind(kst_day_start(yesterday))
    .bind(AUDIENCE_ROWS)
    .execute(&mut *db)
    .await?;
    sqlx::query("ANALYZE ad_events").execute(&mut *db).await?;
    let mut worker = cdp.worker();
    worker.limits = cdp_worker::Limits::default();
    cdp.run("tick").await?;
    let jobs = cdp.take_jobs().await?;
    anyhow::ensure!(jobs.len() == 1, "{} jobs", jobs.len());
    reset_peak_rss();
    let started = Instant::now();
    let response = cdp.work(&worker, jobs).await;
    let took = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    anyhow::ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    let records: i64 = sqlx::query_scalar(
        "SELECT records FROM cdp_exports WHERE advertiser_id = 1 AND dataset = 'audience'",
    )
    .fetch_one(&cdp.db.pool)
    .await?;
    anyhow::ensure!(records == AUDIENCE_ROWS, "{records} audience rows");
    results.push(BenchResult::new(
        "cdp-worker-audience-1m-rows",
        "rows/s",
        AUDIENCE_ROWS as f64 / took,
        &[("target", 100_000.0)],
    ));
    results.push(BenchResult::new(
        "cdp-worker-audience-1m-rows-peak-rss",
        "MiB",
        peak,
        &[("target", 128.0)],
    ));
    Ok(())
}

async fn backfill_bench(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let mut db = setup(&cdp).await?;
    let today = kst_date(Utc::now());
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name)
         SELECT a, 'advertiser ' || a FROM generate_series(1, $1) AS a",
    )
    .bind(BACKFILL_ADVERTISERS)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO campaign_daily_stats
             (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions, cost_micros, hours)
         SELECT a * 10, d::date, a, 1000, 50, 5, 10000000, 24
           FROM generate_series(1, $1) AS a,
                generate_series($2::date - INTERVAL '25 months', $2::date - 1, INTERVAL '1 day') AS d",
    )
    .bind(BACKFILL_ADVERTISERS)
    .bind(today)
    .execute(&mut *db)
    .await?;
    let deps = Arc::new(cdp.worker());
    let base = invoke_endpoint(move |event: Value| {
        let deps = Arc::clone(&deps);
        async move {
            match serde_json::from_value::<SqsEvent>(event) {
                Ok(event) => json!(cdp_worker::handle(event, &deps).await),
                Err(err) => json!({"errorMessage": err.to_string()}),
            }
        }
    })
    .await?;
    let source = SqsSource {
        function: "cdp-worker".to_owned(),
        event: "Jobs".to_owned(),
        queue_url: cdp.aws.queue_url("cdp-jobs").to_owned(),
        batch_size: 2,
        window: Duration::ZERO,
        report_item_failures: true,
        max_concurrency: 5,
    };
    let idle = Duration::from_secs(3);
    let started = Instant::now();
    cdp.run("tick").await?;
    local_triggers::sqs::run(&source, &cdp.aws.sqs, &Invoker::new(&base)?, Some(idle)).await?;
    let took = started.elapsed().saturating_sub(idle).as_secs_f64();
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cdp_months WHERE state = 'COMPLETED'")
            .fetch_one(&cdp.db.pool)
            .await?;
    anyhow::ensure!(
        completed == BACKFILL_ADVERTISERS * 25,
        "{completed} months completed"
    );
    // The seed's pool runs one month per advertiser per tick, whatever its 5-20 threads: each
    // of these months has 28-31 records, inside its 1,000 records per run, so 24 ticks for
    // the backfill and one more for the current month.
    results.push(BenchResult::new(
        "cdp-backfill-1000-advertisers-x-24-months",
        "s",
        took,
        &[("seed pool (25 ticks of 5 min)", 25.0 * SEED_TICK_SECS)],
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let run = bench_filter();
    let mut results = Vec::new();
    if run("cdp-orchestrator") {
        tick_bench(&mut results).await?;
    }
    if run("cdp-worker") {
        worker_bench(&mut results).await?;
    }
    if run("cdp-backfill") {
        backfill_bench(&mut results).await?;
    }
    for r in &results {
        let beside: Vec<String> = r
            .baselines
            .iter()
            .map(|(k, v)| format!("{k} {v:.2} {}", r.unit))
            .collect();
        println!(
            "{:<50} {:>12.2} {:<7} ({})",
            r.name,
            r.value,
            r.unit,
            beside.join(", ")
        );
    }
    let path = record_bench(&results)?;
    println!("figures merged into {}", path.display());
    Ok(())
}
