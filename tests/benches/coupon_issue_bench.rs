//! `make bench`: coupon-issue's issues/s on 1,000- and 10,000-record batches against local
//! PostgreSQL, every request for the same hot coupon from a distinct user (all issued), beside
//! the seed's figures (100–200 TPS one by one, 300+ TPS batched) and a one-transaction-per-
//! record consumer run here on the same data (lock the coupon, check the request and the user,
//! insert outcome and grant, take one unit, commit). A last row runs two instances at once on
//! the same coupon, as two partitions would. Figures go to stdout and target/bench/results.json;
//! there is no pass/fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use adapters::kafka::Retry;
use coupon_issue::{CONSUMER, Deps, handle};
use integration_tests::{
    BenchResult, TestDb, create_topics, db_config, kafka_event_on, record_bench, unique,
};
use serde_json::json;
use sqlx::PgPool;

const SEED_ONE_BY_ONE: f64 = 200.0;
const SEED_BATCHED: f64 = 300.0;
/// Records are stamped the day after the requests.
const STAMP_MS: i64 = 1_795_222_800_000;

fn requests(size: usize, first_user: usize) -> Vec<String> {
    (0..size)
        .map(|i| {
            json!({
                "request_id": format!("bench-{}", first_user + i),
                "coupon_id": 1,
                "user_id": first_user + i,
                "requested_at": format!("2026-11-20T10:{:02}:{:02}.{:03}Z", i / 60_000 % 60, i / 1000 % 60, i % 1000),
            })
            .to_string()
        })
        .collect()
}

async fn reset(db: &PgPool, stock: i64) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE coupon_issue_outcomes, user_coupons")
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO coupons (id, name, total_stock, remaining_stock, valid_from, valid_until)
         VALUES (1, 'bench', $1, $1, '2026-11-01T00:00:00Z', '2026-12-01T00:00:00Z')
         ON CONFLICT (id) DO UPDATE SET total_stock = $1, remaining_stock = $1",
    )
    .bind(stock)
    .execute(db)
    .await?;
    sqlx::query("VACUUM ANALYZE coupons").execute(db).await?;
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn deps(db: PgPool, dlq: &str) -> anyhow::Result<Deps> {
    Ok(Deps {
        dead_letters: integration_tests::dead_letters(&db, CONSUMER)?.to_topic(dlq),
        db,
        on_failure: adapters::kafka::OnFailure::RetryThenDeadLetter(Retry::seed()),
    })
}

/// The seed's way: one transaction per request.
async fn one_transaction_per_record(db: &PgPool, values: &[String]) -> anyhow::Result<usize> {
    let mut issued = 0;
    for value in values {
        let r = domain::coupon::parse_request(value.as_bytes())?;
        let mut tx = db.begin().await?;
        let remaining: Option<i64> = sqlx::query_scalar(
            "SELECT remaining_stock FROM coupons WHERE id = $1 AND status = 'active'
                AND $2 >= valid_from AND $2 < valid_until FOR NO KEY UPDATE",
        )
        .bind(r.coupon_id)
        .bind(r.requested_at)
        .fetch_optional(&mut *tx)
        .await?;
        let decided: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM coupon_issue_outcomes WHERE request_id = $1)",
        )
        .bind(&r.request_id)
        .fetch_one(&mut *tx)
        .await?;
        let holds: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM user_coupons WHERE coupon_id = $1 AND user_id = $2)",
        )
        .bind(r.coupon_id)
        .bind(r.user_id)
        .fetch_one(&mut *tx)
        .await?;
        let outcome = match remaining {
            _ if decided => None,
            None => Some("invalid"),
            Some(_) if holds => Some("duplicate"),
            Some(0) => Some("sold_out"),
            Some(_) => Some("issued"),
        };
        if let Some(outcome) = outcome {
            sqlx::query(
                "INSERT INTO coupon_issue_outcomes (request_id, coupon_id, user_id, requested_at,
                     outcome, topic, partition, \"offset\")
                 VALUES ($1, $2, $3, $4, $5, 'bench', 0, 0)",
            )
            .bind(&r.request_id)
            .bind(r.coupon_id)
            .bind(r.user_id)
            .bind(r.requested_at)
            .bind(outcome)
            .execute(&mut *tx)
            .await?;
            if outcome == "issued" {
                sqlx::query(
                    "INSERT INTO user_coupons (coupon_id, user_id, request_id) VALUES ($1, $2, $3)",
                )
                .bind(r.coupon_id)
                .bind(r.user_id)
                .bind(&r.request_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE coupons SET remaining_stock = remaining_stock - 1 WHERE id = $1",
                )
                .bind(r.coupon_id)
                .execute(&mut *tx)
                .await?;
                issued += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(issued)
}

async fn issued(db: &PgPool) -> anyhow::Result<usize> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM coupon_issue_outcomes WHERE outcome = 'issued'")
            .fetch_one(db)
            .await?;
    Ok(usize::try_from(n)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !integration_tests::bench_filter()("coupon-issue") {
        return Ok(());
    }
    let db = TestDb::new().await?;
    let dlq = unique("bench-coupon-issue-dlq-");
    let topic = unique("bench-coupon-issue-requests-");
    create_topics(&[&dlq]).await?;
    let single = deps(db.pool.clone(), &dlq)?;

    println!(
        "\ncoupon-issue: issues/s, one hot coupon, every request issued (local PostgreSQL; median of the rounds)"
    );
    println!(
        "{:<16} {:>10} {:>16} {:>14} {:>14} {:>12} {:>14}",
        "batch",
        "function",
        "one-tx-per-rec",
        "seed 1-by-1",
        "seed batched",
        "vs one-tx",
        "vs seed batch"
    );
    let mut results = Vec::new();
    for (size, rounds) in [(1_000_usize, 7_usize), (10_000, 3)] {
        let values = requests(size, 1);
        let event = kafka_event_on(&[(&topic, 0, 0, &values)], STAMP_MS)?;
        let mut function = Vec::new();
        for _ in 0..rounds {
            reset(&db.pool, size as i64).await?;
            let event = event.clone();
            let started = Instant::now();
            let summary = handle(event, &single).await?;
            function.push(started.elapsed());
            anyhow::ensure!(summary.applied == size && issued(&db.pool).await? == size);
        }
        let mut naive = Vec::new();
        for _ in 0..rounds.min(2) {
            reset(&db.pool, size as i64).await?;
            let started = Instant::now();
            let n = one_transaction_per_record(&db.pool, &values).await?;
            naive.push(started.elapsed());
            anyhow::ensure!(n == size);
        }
        let f = size as f64 / median(function).as_secs_f64();
        let n = size as f64 / median(naive).as_secs_f64();
        println!(
            "{size:<16} {f:>10.0} {n:>16.0} {:>14} {:>14} {:>11.1}x {:>13.1}x",
            "100-200",
            "300+",
            f / n,
            f / SEED_BATCHED
        );
        results.push(BenchResult {
            name: format!("coupon-issue/batch-{size}"),
            unit: "issues/s".to_owned(),
            value: f.round(),
            baselines: BTreeMap::from([
                ("one-transaction-per-record".to_owned(), n.round()),
                ("seed-one-by-one".to_owned(), SEED_ONE_BY_ONE),
                ("seed-batched".to_owned(), SEED_BATCHED),
            ]),
        });
    }

    // Two instances, each its own pool, 10,000 requests each for the same coupon at once.
    const EACH: usize = 10_000;
    let second = deps(
        adapters::db::pool_with(&db_config(), db.options.clone()),
        &dlq,
    )?;
    let events = [
        kafka_event_on(&[(&topic, 0, 0, &requests(EACH, 1))], STAMP_MS)?,
        kafka_event_on(&[(&topic, 1, 0, &requests(EACH, EACH + 1))], STAMP_MS)?,
    ];
    let mut both = Vec::new();
    for _ in 0..3 {
        reset(&db.pool, 2 * EACH as i64).await?;
        let [a, b] = events.clone();
        let started = Instant::now();
        let (ra, rb) = tokio::join!(handle(a, &single), handle(b, &second));
        both.push(started.elapsed());
        anyhow::ensure!(ra?.applied + rb?.applied == 2 * EACH);
        anyhow::ensure!(issued(&db.pool).await? == 2 * EACH);
    }
    let f = (2 * EACH) as f64 / median(both).as_secs_f64();
    println!(
        "{:<16} {f:>10.0} {:>16} {:>14} {:>14} {:>12} {:>13.1}x",
        "2 x 10000 at once",
        "",
        "100-200",
        "300+",
        "",
        f / SEED_BATCHED
    );
    results.push(BenchResult {
        name: "coupon-issue/two-instances-2x10000".to_owned(),
        unit: "issues/s".to_owned(),
        value: f.round(),
        baselines: BTreeMap::from([("seed-batched".to_owned(), SEED_BATCHED)]),
    });

    let path = record_bench(&results)?;
    println!("figures written to {}", path.display());
    Ok(())
}
