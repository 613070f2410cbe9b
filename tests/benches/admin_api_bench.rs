//! `make bench`: the admin API on a database of 10,000 advertisers × 24 months (the CDP
//! fixture's own database, queue and topic), its router called in this process as Lambda's
//! runtime calls it, 8 requests in flight.
//!
//! - `admin-api-status`: `GET /admin/backfill/status` (counts over all 240,000 months);
//! - `admin-api-progress`: `GET /admin/backfill/advertisers/{id}/progress`, a random advertiser
//!   each time;
//! - `admin-api-list`: `GET /admin/backfill/advertisers?limit=50`, walking the pages by cursor
//!   (and `…/{id}/months?limit=12` pages for a random advertiser).
//!
//! Each gives requests/s and the p99 latency, beside the stage's default throttle (200 req/s:
//! the function must not be what limits the API) and the p99 alarm (1,000 ms). Figures go to
//! stdout and target/bench/results.json; there is no pass/fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use integration_tests::{AdminApi, BenchResult, admin_call, bench_filter, record_bench};

const ADVERTISERS: i64 = 10_000;
const REQUESTS: usize = 2_000;
const IN_FLIGHT: usize = 8;

/// 10,000 advertisers, each with its 24 months: most COMPLETED, a few FAILED, one in flight.
async fn seed(api: &AdminApi) -> anyhow::Result<()> {
    let mut conn = api.cdp.db.pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name, backfill_start_month)
         SELECT a, 'advertiser ' || a, date_trunc('month', now())::date - interval '24 months'
         FROM generate_series(1, $1) AS a",
    )
    .bind(ADVERTISERS)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, claim_token, completed_at, processed_records)
         SELECT a, date_trunc('month', now())::date - m * interval '1 month',
                CASE WHEN m = 1 THEN 'QUEUED' WHEN (a + m) % 97 = 0 THEN 'FAILED' ELSE 'COMPLETED' END,
                CASE WHEN m = 1 THEN gen_random_uuid() END,
                CASE WHEN m > 1 THEN now() - (a % 600 + m) * interval '1 minute' END, 30
         FROM generate_series(1, $1) AS a, generate_series(1, 24) AS m",
    )
    .bind(ADVERTISERS)
    .execute(&mut *conn)
    .await?;
    sqlx::raw_sql("ANALYZE advertisers; ANALYZE cdp_months")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `REQUESTS` GETs of the paths `path` gives (by request number), `IN_FLIGHT` at a time:
/// requests/s and the p99 in ms.
async fn load(
    deps: &Arc<admin_api::Deps>,
    path: impl Fn(usize) -> String,
) -> anyhow::Result<(f64, f64)> {
    let requests: Vec<_> = (0..REQUESTS)
        .map(|n| {
            let (deps, path) = (deps.clone(), path(n));
            async move {
                let started = Instant::now();
                let answer = admin_call(deps, "GET", &path, Some("ops:read"), None, None).await?;
                anyhow::ensure!(answer.status.is_success(), "{path}: {answer:?}");
                Ok::<_, anyhow::Error>(started.elapsed())
            }
        })
        .collect();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(requests)
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let took = started.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    Ok((REQUESTS as f64 / took, p99.as_secs_f64() * 1000.0))
}

/// The path of request `n`.
type PathOf = Box<dyn Fn(usize) -> String>;

/// A stable pseudo-random advertiser for request `n`.
fn advertiser(n: usize) -> i64 {
    (n as i64 * 7_919) % ADVERTISERS + 1
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let run = bench_filter();
    let mut results = Vec::new();
    if run("admin-api") {
        let api = AdminApi::new().await?;
        seed(&api).await?;
        let deps = api.deps.clone();
        // Pages of the advertisers list, by cursor: every request the next page, from the
        // first again after the last (10,000 / 50 = 200 pages).
        let mut cursors = vec![None];
        loop {
            let path = match cursors.last().and_then(Clone::clone) {
                Some(cursor) => format!("/backfill/advertisers?limit=50&cursor={cursor}"),
                None => "/backfill/advertisers?limit=50".to_owned(),
            };
            let page = admin_call(deps.clone(), "GET", &path, Some("ops:read"), None, None).await?;
            match page.body["next_cursor"].as_str() {
                Some(next) => cursors.push(Some(next.to_owned())),
                None => break,
            }
        }
        anyhow::ensure!(cursors.len() == 200, "{} pages", cursors.len());
        let benches: [(&str, PathOf); 4] = [
            ("status", Box::new(|_| "/backfill/status".to_owned())),
            (
                "progress",
                Box::new(|n| format!("/backfill/advertisers/{}/progress", advertiser(n))),
            ),
            (
                "list-advertisers",
                Box::new(move |n| match &cursors[n % cursors.len()] {
                    Some(cursor) => format!("/backfill/advertisers?limit=50&cursor={cursor}"),
                    None => "/backfill/advertisers?limit=50".to_owned(),
                }),
            ),
            (
                "list-months",
                Box::new(|n| format!("/backfill/advertisers/{}/months?limit=12", advertiser(n))),
            ),
        ];
        for (name, path) in benches {
            let (rate, p99) = load(&deps, path).await?;
            results.push(BenchResult::new(
                &format!("admin-api-{name}-throughput"),
                "req/s",
                rate,
                &[("stage throttle (ApiRateLimit)", 200.0)],
            ));
            results.push(BenchResult::new(
                &format!("admin-api-{name}-p99"),
                "ms",
                p99,
                &[("LatencyP99 alarm", 1000.0)],
            ));
        }
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
