//! `make bench`: Kafka consumers' records/s on 1,000- and 10,000-record batches against local
//! PostgreSQL, beside the seed's target, a naive consumer (decode, validate and one INSERT per
//! record) and COPY of the same rows into the same table (the ceiling). Figures go to stdout and
//! to target/bench/results.json; there is no pass/fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use adapters::kafka::KafkaBatchSummary;
use aws_lambda_events::event::kafka::KafkaEvent;
use domain::metrics::parse_window;
use integration_tests::{
    BenchResult, TestDb, create_topics, peak_rss_mib, record_bench, reset_peak_rss, unique,
};
use performance_metrics::{CONSUMER, Deps, handle};
use serde_json::json;

const SEED_TARGET: f64 = 5_000.0;

/// `size` distinct 1-minute windows as Kafka record values.
fn windows(size: usize) -> Vec<String> {
    (0..size)
        .map(|i| {
            let minute = i % 1440;
            json!({
                "campaign_id": 1 + i / 1440, "advertiser_id": 1 + i / 14_400, "window_size": "1m",
                "window_start": format!("2026-11-20T{:02}:{:02}:00Z", minute / 60, minute % 60),
                "impressions": 1000 + i % 97, "clicks": 30 + i % 7, "conversions": i % 5,
                "cost": 12.5 + (i % 11) as f64,
            })
            .to_string()
        })
        .collect()
}

/// The benchmark's events are all stamped 2026-11-20T15:00:00Z.
fn kafka_event(topic: &str, values: &[String]) -> anyhow::Result<KafkaEvent> {
    integration_tests::kafka_event(topic, 0, 1_763_650_800_000, values)
}

async fn truncate(db: &TestDb) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE performance_metrics")
        .execute(&db.pool)
        .await?;
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// quality-score: every update a campaign's first score (all written: history and score rows),
/// beside a naive consumer (per record: read the stored score, insert history, upsert score)
/// and COPY of the same history rows.
/// Times `rounds` invocations of `handle` on (a copy of) `event`, each after `reset`, checking
/// each applied all `size` records. Returns the times and the peak RSS over the rounds.
async fn time_function(
    rounds: usize,
    size: usize,
    event: &KafkaEvent,
    mut reset: impl AsyncFnMut() -> anyhow::Result<()>,
    handle: impl AsyncFn(KafkaEvent) -> Result<KafkaBatchSummary, domain::WorkerError>,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let mut times = Vec::with_capacity(rounds);
    let mut peak: f64 = 0.0;
    for _ in 0..rounds {
        reset().await?;
        // The runtime hands the function an owned event: the copy is not the function's cost.
        let event = event.clone();
        reset_peak_rss();
        let started = Instant::now();
        let summary = handle(event).await?;
        times.push(started.elapsed());
        peak = peak.max(peak_rss_mib());
        anyhow::ensure!(
            summary.applied == size,
            "only {} of {size} applied",
            summary.applied
        );
    }
    Ok((times, peak))
}

async fn bench_quality_score(db: &TestDb) -> anyhow::Result<Vec<BenchResult>> {
    use quality_score::{CONSUMER as QUALITY, Deps as QualityDeps, handle as handle_quality};
    const SEED: f64 = 1_000.0;
    let topic = unique("bench-quality-score-updates-");
    create_topics(&[&format!("{topic}-dlq")]).await?;
    let aws = integration_tests::TestAws::new().await?;
    let sns = adapters::aws::sns(&aws.sdk);
    let alerts = sns
        .create_topic()
        .name(format!("{}-alerts", aws.prefix))
        .send()
        .await?;
    let deps = QualityDeps {
        db: db.pool.clone(),
        dead_letters: integration_tests::dead_letters(&db.pool, QUALITY)?,
        outbox: adapters::outbox::Outbox::new(
            db.pool.clone(),
            sns,
            QUALITY,
            alerts.topic_arn.unwrap_or_default(),
        ),
    };
    let reset = async || -> anyhow::Result<()> {
        sqlx::query("TRUNCATE quality_scores, quality_score_history, outbox")
            .execute(&db.pool)
            .await?;
        Ok(())
    };

    println!("\nquality-score: records/s (local PostgreSQL; median of the rounds)");
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>14}",
        "batch", "function", "naive", "COPY", "seed", "vs COPY", "vs naive", "peak RSS MiB"
    );
    let mut results = Vec::new();
    for (size, rounds) in [(1_000_usize, 7_usize), (10_000, 3)] {
        let values: Vec<String> = (0..size)
            .map(|i| {
                json!({"campaign_id": 1 + i, "advertiser_id": 1 + i / 100,
                       "score": (i % 100) as f64 / 10.0, "computed_at": "2026-11-20T10:00:00Z"})
                .to_string()
            })
            .collect();
        let event = kafka_event(&topic, &values)?;

        let (function, peak) = time_function(rounds, size, &event, &reset, async |e| {
            handle_quality(e, &deps).await
        })
        .await?;

        let mut naive = Vec::new();
        for _ in 0..rounds.min(3) {
            reset().await?;
            let started = Instant::now();
            for value in &values {
                let u = domain::quality::parse_score(value.as_bytes(), chrono::Utc::now())?;
                let stored: Option<f64> =
                    sqlx::query_scalar("SELECT score FROM quality_scores WHERE campaign_id = $1")
                        .bind(u.campaign_id)
                        .fetch_optional(&db.pool)
                        .await?;
                sqlx::query(
                    "INSERT INTO quality_score_history (campaign_id, advertiser_id, previous_score,
                         score, computed_at, sharp_drop) VALUES ($1, $2, $3, $4, $5, false)",
                )
                .bind(u.campaign_id)
                .bind(u.advertiser_id)
                .bind(stored)
                .bind(u.score)
                .bind(u.computed_at)
                .execute(&db.pool)
                .await?;
                sqlx::query(
                    "INSERT INTO quality_scores (campaign_id, advertiser_id, score, computed_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (campaign_id) DO UPDATE
                     SET score = EXCLUDED.score, computed_at = EXCLUDED.computed_at",
                )
                .bind(u.campaign_id)
                .bind(u.advertiser_id)
                .bind(u.score)
                .bind(u.computed_at)
                .execute(&db.pool)
                .await?;
            }
            naive.push(started.elapsed());
        }

        let mut text = String::new();
        for value in &values {
            let u = domain::quality::parse_score(value.as_bytes(), chrono::Utc::now())?;
            text.push_str(&format!(
                "{}\t{}\t\\N\t{}\t{}\tf\n",
                u.campaign_id,
                u.advertiser_id,
                u.score,
                u.computed_at.to_rfc3339()
            ));
        }
        let copy = copy_rounds(
            db,
            "quality_scores, quality_score_history",
            "COPY quality_score_history (campaign_id, advertiser_id, previous_score, score,
                 computed_at, sharp_drop) FROM STDIN",
            &text,
            rounds,
        )
        .await?;

        results.extend(report(Row {
            function: "quality-score",
            size,
            measured: [median(function), median(naive), median(copy)],
            seed: SEED,
            baselines: ["naive-per-record", "copy-history-rows"],
            peak_rss_mib: peak,
        }));
    }
    Ok(results)
}

/// budget-sync: every record a distinct campaign, every other one 10 % off and corrected, so a
/// batch records `size` accuracy rows and applies `size / 2` Redis corrections in one pipeline.
/// Redis is a server of the benchmark's own, emptied before each round.
async fn bench_budget_sync(db: &TestDb) -> anyhow::Result<Vec<BenchResult>> {
    use budget_sync::{CONSUMER as BUDGET, Deps as BudgetDeps, handle as handle_budget};
    use domain::budget::{counter_key, parse_sync};
    const SEED: f64 = 500.0;
    let topic = unique("bench-budget-management-");
    create_topics(&[&format!("{topic}-dlq")]).await?;
    let redis = integration_tests::RedisServer::start().await?;
    let mut conn = redis.connection().await?;
    let mut naive_conn = redis.connection().await?;
    let aws = integration_tests::TestAws::new().await?;
    let deps = BudgetDeps {
        db: db.pool.clone(),
        redis: adapters::redis::connect_lazy(&adapters::config::RedisConfig {
            url: redis.url().into(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(3),
            retries: 3,
        })?,
        dead_letters: integration_tests::dead_letters(&db.pool, BUDGET)?,
        outbox: adapters::outbox::Outbox::new(
            db.pool.clone(),
            adapters::aws::sns(&aws.sdk),
            BUDGET,
            String::new(),
        ),
        redis_budget: Duration::from_secs(10),
    };
    let mut reset = async || -> anyhow::Result<()> {
        sqlx::query("TRUNCATE budget_sync_accuracy, campaign_pauses, outbox")
            .execute(&db.pool)
            .await?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
        Ok(())
    };

    println!("\nbudget-sync: records/s (local PostgreSQL and Redis; median of the rounds)");
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>14}",
        "batch", "function", "naive", "COPY", "seed", "vs COPY", "vs naive", "peak RSS MiB"
    );
    let mut results = Vec::new();
    for (size, rounds) in [(1_000_usize, 7_usize), (10_000, 3)] {
        let values: Vec<String> = (0..size)
            .map(|i| {
                let db_spent = 10_000 + (i as i64 % 500) * 100;
                let redis_spent = if i % 2 == 0 {
                    db_spent * 11 / 10
                } else {
                    db_spent
                };
                json!({"campaign_id": (1 + i).to_string(), "redis_spent": redis_spent,
                       "db_spent": db_spent, "sync_action": "adjust_redis"})
                .to_string()
            })
            .collect();
        let event = kafka_event(&topic, &values)?;
        let produced_at =
            chrono::DateTime::from_timestamp_millis(1_763_650_800_000).unwrap_or_default();

        let (function, peak) = time_function(rounds, size, &event, &mut reset, async |e| {
            handle_budget(e, &deps).await
        })
        .await?;
        let corrected: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM budget_sync_accuracy WHERE correction = 'applied'",
        )
        .fetch_one(&db.pool)
        .await?;
        anyhow::ensure!(
            corrected as usize == size / 2,
            "{corrected} corrections applied"
        );

        // One INSERT and, when due, one INCRBY per record.
        let mut naive = Vec::new();
        for _ in 0..rounds.min(3) {
            reset().await?;
            let started = Instant::now();
            for (offset, value) in values.iter().enumerate() {
                let sync = parse_sync(value.as_bytes(), produced_at)?;
                let delta = sync.correction();
                sqlx::query(
                    "INSERT INTO budget_sync_accuracy (topic, partition, \"offset\", produced_at,
                         campaign_id, spend_date, redis_spent, db_spent, accuracy,
                         difference_ratio, correction_delta, correction)
                     VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&topic)
                .bind(offset as i64)
                .bind(produced_at)
                .bind(sync.campaign_id)
                .bind(sync.spend_date)
                .bind(sync.redis_spent)
                .bind(sync.db_spent)
                .bind(sync.accuracy())
                .bind(sync.difference_ratio())
                .bind(delta)
                .bind(if delta.is_some() { "applied" } else { "none" })
                .execute(&db.pool)
                .await?;
                if let Some(delta) = delta {
                    redis::cmd("INCRBY")
                        .arg(counter_key(sync.campaign_id, sync.spend_date))
                        .arg(delta)
                        .query_async::<i64>(&mut naive_conn)
                        .await?;
                }
            }
            naive.push(started.elapsed());
        }

        let mut text = String::new();
        for (offset, value) in values.iter().enumerate() {
            let sync = parse_sync(value.as_bytes(), produced_at)?;
            let delta = sync.correction();
            text.push_str(&format!(
                "{topic}\t0\t{offset}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                produced_at.to_rfc3339(),
                sync.campaign_id,
                sync.spend_date,
                sync.redis_spent,
                sync.db_spent,
                sync.accuracy(),
                sync.difference_ratio(),
                delta.map_or("\\N".to_owned(), |d| d.to_string()),
                if delta.is_some() { "applied" } else { "none" },
            ));
        }
        let copy = copy_rounds(
            db,
            "budget_sync_accuracy, campaign_pauses",
            "COPY budget_sync_accuracy (topic, partition, \"offset\", produced_at, campaign_id,
                 spend_date, redis_spent, db_spent, accuracy, difference_ratio, correction_delta,
                 correction) FROM STDIN",
            &text,
            rounds,
        )
        .await?;

        results.extend(report(Row {
            function: "budget-sync",
            size,
            measured: [median(function), median(naive), median(copy)],
            seed: SEED,
            baselines: ["naive-per-record", "copy-accuracy-rows"],
            peak_rss_mib: peak,
        }));
    }
    Ok(results)
}

/// One batch size's figures: the function's, the naive consumer's and COPY's median times.
struct Row {
    function: &'static str,
    size: usize,
    measured: [Duration; 3],
    seed: f64,
    /// Result names of the naive and the COPY figures.
    baselines: [&'static str; 2],
    peak_rss_mib: f64,
}

/// Prints the row under the table header and returns it as results.
fn report(row: Row) -> Vec<BenchResult> {
    let [f, n, c] = row.measured.map(|d| row.size as f64 / d.as_secs_f64());
    println!(
        "{:<8} {f:>12.0} {n:>12.0} {c:>12.0} {:>12.0} {:>9.2}x {:>9.1}x {:>14.1}",
        row.size,
        row.seed,
        f / c,
        f / n,
        row.peak_rss_mib
    );
    let name = format!("{}/batch-{}", row.function, row.size);
    vec![
        BenchResult {
            name: name.clone(),
            unit: "records/s".to_owned(),
            value: f.round(),
            baselines: BTreeMap::from([
                ("seed-target".to_owned(), row.seed),
                (row.baselines[0].to_owned(), n.round()),
                (row.baselines[1].to_owned(), c.round()),
            ]),
        },
        BenchResult {
            name: format!("{name}/peak-rss"),
            unit: "MiB".to_owned(),
            value: (row.peak_rss_mib * 10.0).round() / 10.0,
            baselines: BTreeMap::new(),
        },
    ]
}

/// Times one COPY of `text` per round, into tables emptied before each round.
async fn copy_rounds(
    db: &TestDb,
    tables: &str,
    copy: &str,
    text: &str,
    rounds: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {tables}")))
            .execute(&db.pool)
            .await?;
        let mut conn = copy_connection(db).await?;
        let started = Instant::now();
        let mut sink = conn.copy_in_raw(copy).await?;
        sink.send(text.as_bytes()).await?;
        sink.finish().await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

/// The COPY ceiling runs over the Unix socket where there is one: sqlx does not set
/// TCP_NODELAY, and COPY's two small writes (data, then done) would otherwise wait ~40 ms for
/// a delayed ACK, which is not what COPY costs. The function itself is measured over TCP, as
/// deployed, so the ratio is conservative.
async fn copy_connection(db: &TestDb) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection as _;
    let socket = db.options.clone().socket("/var/run/postgresql");
    match sqlx::PgConnection::connect_with(&socket).await {
        Ok(conn) => Ok(conn),
        Err(_) => Ok(sqlx::PgConnection::connect_with(&db.options).await?),
    }
}

async fn bench_performance_metrics(db: &TestDb) -> anyhow::Result<Vec<BenchResult>> {
    let topic = unique("bench-performance-metrics-");
    create_topics(&[&format!("{topic}-dlq")]).await?;
    let deps = Deps {
        db: db.pool.clone(),
        dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?,
    };

    println!("performance-metrics: records/s (local PostgreSQL; median of the rounds)");
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>14}",
        "batch", "function", "naive", "COPY", "seed", "vs COPY", "vs naive", "peak RSS MiB"
    );
    let mut results = Vec::new();
    for (size, rounds) in [(1_000_usize, 7_usize), (10_000, 3)] {
        let values = windows(size);
        let event = kafka_event(&topic, &values)?;

        let (function, peak) = time_function(
            rounds,
            size,
            &event,
            async || truncate(db).await,
            async |e| handle(e, &deps).await,
        )
        .await?;

        let mut naive = Vec::new();
        for _ in 0..rounds.min(3) {
            truncate(db).await?;
            let started = Instant::now();
            for value in &values {
                let w = parse_window(value.as_bytes())?;
                sqlx::query(
                    "INSERT INTO performance_metrics (campaign_id, advertiser_id, window_size,
                         window_start, window_date, impressions, clicks, conversions, cost_micros)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (campaign_id, window_size, window_start) DO NOTHING",
                )
                .bind(w.campaign_id)
                .bind(w.advertiser_id)
                .bind(w.window_size.as_str())
                .bind(w.window_start)
                .bind(w.window_date)
                .bind(w.impressions)
                .bind(w.clicks)
                .bind(w.conversions)
                .bind(w.cost_micros)
                .execute(&db.pool)
                .await?;
            }
            naive.push(started.elapsed());
        }

        let mut text = String::new();
        for value in &values {
            let w = parse_window(value.as_bytes())?;
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                w.campaign_id,
                w.advertiser_id,
                w.window_size.as_str(),
                w.window_start.to_rfc3339(),
                w.window_date,
                w.impressions,
                w.clicks,
                w.conversions,
                w.cost_micros
            ));
        }
        let copy = copy_rounds(
            db,
            "performance_metrics",
            "COPY performance_metrics (campaign_id, advertiser_id, window_size, window_start,
                 window_date, impressions, clicks, conversions, cost_micros) FROM STDIN",
            &text,
            rounds,
        )
        .await?;

        results.extend(report(Row {
            function: "performance-metrics",
            size,
            measured: [median(function), median(naive), median(copy)],
            seed: SEED_TARGET,
            baselines: ["naive-insert-per-record", "copy"],
            peak_rss_mib: peak,
        }));
    }
    Ok(results)
}

/// Writes out the dirty pages the previous function's rounds left, so that flushing them does
/// not land in the next function's figures.
async fn settle(db: &TestDb) -> anyhow::Result<()> {
    sqlx::query("CHECKPOINT").execute(&db.pool).await?;
    Ok(())
}

/// `cargo bench --bench kafka_consumers_bench -- budget` runs only the functions whose names
/// contain one of the words given; no words run all.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted = integration_tests::bench_filter();
    let db = TestDb::new().await?;
    let mut results = Vec::new();
    if wanted("performance-metrics") {
        settle(&db).await?;
        results.extend(bench_performance_metrics(&db).await?);
    }
    if wanted("budget-sync") {
        settle(&db).await?;
        results.extend(bench_budget_sync(&db).await?);
    }
    if wanted("quality-score") {
        settle(&db).await?;
        results.extend(bench_quality_score(&db).await?);
    }
    let path = record_bench(&results)?;
    println!("figures written to {}", path.display());
    Ok(())
}
