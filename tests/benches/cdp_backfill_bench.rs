//! `make bench`: the CDP backfill on the real stack (its own database, jobs queue and bucket).
//!
//! - `cdp-orchestrator-tick-*`: one tick over 10,000 advertisers. First sight of 10,000 NEW
//!   ones: 240,000 months created and 10,000 queued. Then a tick where every one has its month
//!   in flight. Then 10,000 EXISTING ones, each with a month of daily rows, nothing changed:
//!   the steady state. The target is ≤ 2 s.
//! - `cdp-worker-audience-*`: one month of 1,000,000 audience rows (a million devices), read,
//!   pseudonymised, written as Parquet and put in S3. Rows/s (target ≥ 100,000) and the
//!   process's peak RSS while the month runs (target ≤ 128 MB).
//! - `cdp-backfill-1000-advertisers`: 1,000 NEW advertisers × 24 months, plus their current
//!   month, through the SQS event source (`local_triggers::sqs`, the template's batch of 2 and
//!   5 pollers) to the worker's real handler in this process. Wall time, beside what the seed's
//!   pool would need: one month per advertiser per 5-minute tick, so at least 24 ticks.
//!
//! Figures go to stdout and target/bench/results.json; there is no pass/fail.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Utc;
use domain::backfill::current_month;
use domain::calendar::{kst_date, kst_day_start, sub_days};
use integration_tests::{
    BenchResult, Cdp, bench_filter, invoke_endpoint, peak_rss_mib, record_bench, reset_peak_rss,
};
use local_triggers::invoke::Invoker;
use local_triggers::template::SqsSource;
use serde_json::{Value, json};

const TICK_ADVERTISERS: i64 = 10_000;
const AUDIENCE_ROWS: i64 = 1_000_000;
const BACKFILL_ADVERTISERS: i64 = 1_000;
/// The seed's orchestrator period.
const SEED_TICK_SECS: f64 = 300.0;

fn result(name: &str, unit: &str, value: f64, baselines: &[(&str, f64)]) -> BenchResult {
    BenchResult {
        name: name.to_owned(),
        unit: unit.to_owned(),
        value,
        baselines: baselines
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn timed_tick(cdp: &Cdp) -> anyhow::Result<(f64, Value)> {
    let started = Instant::now();
    let summary = cdp.run("tick").await?;
    Ok((started.elapsed().as_secs_f64(), summary))
}

async fn tick_bench(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name)
         SELECT a, 'advertiser ' || a FROM generate_series(1, $1) AS a",
    )
    .bind(TICK_ADVERTISERS)
    .execute(&cdp.db.pool)
    .await?;
    let target = [("target", 2.0)];
    let (first, summary) = timed_tick(&cdp).await?;
    anyhow::ensure!(summary["queued"] == TICK_ADVERTISERS, "{summary}");
    results.push(result(
        "cdp-orchestrator-tick-10000-new-first-sight",
        "s",
        first,
        &target,
    ));
    let (waiting, summary) = timed_tick(&cdp).await?;
    anyhow::ensure!(summary["waiting"] == TICK_ADVERTISERS, "{summary}");
    results.push(result(
        "cdp-orchestrator-tick-10000-in-flight",
        "s",
        waiting,
        &target,
    ));
    // The steady state: every advertiser EXISTING with a campaign's daily rows for its current
    // month, the month done and unchanged since.
    let today = kst_date(Utc::now());
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
    .execute(&cdp.db.pool)
    .await?;
    sqlx::query("ANALYZE campaign_daily_stats")
        .execute(&cdp.db.pool)
        .await?;
    for statement in [
        "UPDATE advertisers SET advertiser_type = 'EXISTING', backfill_completed = true",
        "DELETE FROM cdp_months",
    ] {
        sqlx::query(statement).execute(&cdp.db.pool).await?;
    }
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, claim_token, started_at, completed_at)
         SELECT advertiser_id, $1, 'COMPLETED', gen_random_uuid(), now(), now() FROM advertisers",
    )
    .bind(current_month(today))
    .execute(&cdp.db.pool)
    .await?;
    let (steady, summary) = timed_tick(&cdp).await?;
    anyhow::ensure!(summary["idle"] == TICK_ADVERTISERS, "{summary}");
    results.push(result(
        "cdp-orchestrator-tick-10000-existing-unchanged",
        "s",
        steady,
        &target,
    ));
    Ok(())
}

async fn worker_bench(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
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
    .execute(&cdp.db.pool)
    .await?;
    sqlx::query("ANALYZE ad_events")
        .execute(&cdp.db.pool)
        .await?;
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
    results.push(result(
        "cdp-worker-audience-1m-rows",
        "rows/s",
        AUDIENCE_ROWS as f64 / took,
        &[("target", 100_000.0)],
    ));
    results.push(result(
        "cdp-worker-audience-1m-rows-peak-rss",
        "MiB",
        peak,
        &[("target", 128.0)],
    ));
    Ok(())
}

async fn backfill_bench(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let today = kst_date(Utc::now());
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name)
         SELECT a, 'advertiser ' || a FROM generate_series(1, $1) AS a",
    )
    .bind(BACKFILL_ADVERTISERS)
    .execute(&cdp.db.pool)
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
    .execute(&cdp.db.pool)
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
    results.push(result(
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
