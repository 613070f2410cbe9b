//! `make bench`: the alerts, beside seed 004's figures (synchronous delivery 0.29 alerts/s,
//! 3.5 s per request; on Kafka 2.64 alerts/s, 378 ms per request) and a naive version run here
//! on the same data:
//!
//! - alert-intake: requests/s and p50/p99 latency through the router (validation, insert,
//!   outbox, flush to the broker), 16 clients at once;
//! - alert-fanout: one alert to 100,000 subscribers, records/s produced and acknowledged;
//! - user-alert-delivery, the status step: statuses/s on 1,000- and 10,000-record batches
//!   (users without channels), beside a consumer that checks and inserts one status per record
//!   as the seed did;
//! - user-alert-delivery, the channels: deliveries/s to a local WebSocket management endpoint,
//!   32 in flight;
//! - alert-connections: WebSocket connects/s (authorizer with a signed token, then `$connect`).
//!
//! Peak RSS is the bench process's while each step runs. Figures go to stdout and
//! target/bench/results.json; there is no pass/fail.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::kafka::{OnFailure, Producer, Retry};
use adapters::outbox::Outbox;
use axum::http::Request;
use integration_tests::{
    BenchResult, ConnectionsApi, TestAws, TestDb, bench_filter, create_topics, dead_letters,
    kafka_brokers, kafka_event, peak_rss_mib, record_bench, reset_peak_rss, unique,
};
use lambda_http::request::RequestContext;
use serde_json::json;
use sqlx::PgPool;
use tower::ServiceExt as _;

const SEED_SYNC_PER_S: f64 = 0.29;
const SEED_KAFKA_PER_S: f64 = 2.64;
const SEED_KAFKA_LATENCY_MS: f64 = 378.0;
const STAMP_MS: i64 = 1_795_136_400_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn intake(db: &PgPool, topic: &str) -> anyhow::Result<Vec<BenchResult>> {
    const REQUESTS: usize = 2_000;
    const CLIENTS: usize = 16;
    let deps = Arc::new(alert_intake::Deps {
        outbox: Outbox::to_kafka(
            db.clone(),
            Producer::plaintext(&kafka_brokers())?,
            alert_intake::PRODUCER,
            topic,
        ),
        db: db.clone(),
        dedupe_window: Duration::from_secs(3600),
    });
    let router = alert_intake::router(deps);
    reset_peak_rss();
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let router = router.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (client..REQUESTS).step_by(CLIENTS) {
                let context: RequestContext = RequestContext::ApiGatewayV2(serde_json::from_value(json!({
                    "requestId": format!("bench-{i}"),
                    "http": { "method": "POST", "path": "/alerts", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
                    "authorizer": { "jwt": { "claims": { "sub": "bench" } } },
                }))?);
                let body = json!({
                    "alert_kind": "DEPLOYMENT", "app_name": "bank-api", "title": format!("deploy {i}"),
                    "body": "rolled out", "severity": "info", "dedupe_key": format!("bench-{i}"),
                })
                .to_string();
                let request = Request::builder()
                    .method("POST")
                    .uri("/alerts")
                    .header("content-type", "application/json")
                    .extension(context)
                    .body(lambda_http::Body::from(body))?;
                let sent = Instant::now();
                let response = router.clone().oneshot(request).await?;
                anyhow::ensure!(response.status() == 202, "answered {}", response.status());
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await??);
    }
    let elapsed = started.elapsed();
    let rss = peak_rss_mib();
    latencies.sort();
    let per_s = REQUESTS as f64 / elapsed.as_secs_f64();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "alert-intake   {REQUESTS} requests, {CLIENTS} clients: {per_s:>8.0} req/s (seed {SEED_SYNC_PER_S} sync, {SEED_KAFKA_PER_S} on Kafka: {:.0}x)  p50 {:.1} ms  p99 {:.1} ms (seed {SEED_KAFKA_LATENCY_MS} ms)  peak RSS {rss:.0} MiB",
        per_s / SEED_KAFKA_PER_S,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    Ok(vec![
        BenchResult {
            name: "alert-intake requests/s (16 clients)".into(),
            unit: "requests/s".into(),
            value: per_s,
            baselines: BTreeMap::from([
                ("seed synchronous".into(), SEED_SYNC_PER_S),
                ("seed on Kafka".into(), SEED_KAFKA_PER_S),
            ]),
        },
        BenchResult {
            name: "alert-intake p99 latency".into(),
            unit: "ms".into(),
            value: p99.as_secs_f64() * 1e3,
            baselines: BTreeMap::from([("seed on Kafka".into(), SEED_KAFKA_LATENCY_MS)]),
        },
        BenchResult {
            name: "alert-intake peak RSS".into(),
            unit: "MiB".into(),
            value: rss,
            baselines: BTreeMap::new(),
        },
    ])
}

async fn fan_out(db: &PgPool, user_topic: &str, dlq: &str) -> anyhow::Result<Vec<BenchResult>> {
    const SUBSCRIBERS: i64 = 100_000;
    sqlx::query("INSERT INTO alert_users (user_id) SELECT 'user' || lpad(i::text, 7, '0') FROM generate_series(1, $1) i")
        .bind(SUBSCRIBERS)
        .execute(db)
        .await?;
    sqlx::query("INSERT INTO alert_subscriptions (user_id, app_name) SELECT user_id, 'bank-api' FROM alert_users")
        .execute(db)
        .await?;
    sqlx::query("ANALYZE alert_users, alert_subscriptions")
        .execute(db)
        .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (alert_kind, app_name, title, body, severity, created_by)
         VALUES ('DEPLOYMENT', 'bank-api', 'fan-out', 'b', 'info', 'bench') RETURNING id",
    )
    .fetch_one(db)
    .await?;
    let deps = alert_fanout::Deps {
        producer: Producer::plaintext(&kafka_brokers())?,
        topic: user_topic.to_owned(),
        dead_letters: dead_letters(db, alert_fanout::CONSUMER)?.to_topic(dlq),
        db: db.clone(),
        on_failure: OnFailure::RetryThenDeadLetter(Retry::seed()),
    };
    reset_peak_rss();
    let started = Instant::now();
    let published = alert_fanout::fan_out(&deps, id).await?.unwrap_or(0);
    let elapsed = started.elapsed();
    let rss = peak_rss_mib();
    anyhow::ensure!(published == SUBSCRIBERS as u64, "published {published}");
    let per_s = published as f64 / elapsed.as_secs_f64();
    println!(
        "alert-fanout   1 alert -> {published} subscribers in {:.2} s: {per_s:>8.0} records/s acknowledged (target 50,000)  peak RSS {rss:.0} MiB",
        elapsed.as_secs_f64()
    );
    Ok(vec![
        BenchResult {
            name: "alert-fanout records/s (100,000 subscribers)".into(),
            unit: "records/s".into(),
            value: per_s,
            baselines: BTreeMap::from([("target".into(), 50_000.0)]),
        },
        BenchResult {
            name: "alert-fanout peak RSS".into(),
            unit: "MiB".into(),
            value: rss,
            baselines: BTreeMap::new(),
        },
    ])
}

/// The seed's way: per record, ask whether the status exists, and insert it if not.
async fn naive_statuses(db: &PgPool, alert_id: i64, users: &[String]) -> anyhow::Result<usize> {
    let mut created = 0;
    for user in users {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM user_alert_statuses WHERE alert_id = $1 AND user_id = $2)",
        )
        .bind(alert_id)
        .bind(user)
        .fetch_one(db)
        .await?;
        if !exists {
            sqlx::query("INSERT INTO user_alert_statuses (alert_id, user_id, status) VALUES ($1, $2, 'stored')")
                .bind(alert_id)
                .bind(user)
                .execute(db)
                .await?;
            created += 1;
        }
    }
    Ok(created)
}

async fn statuses(
    db: &PgPool,
    aws: &TestAws,
    ws: &ConnectionsApi,
    topic: &str,
    dlq: &str,
) -> anyhow::Result<Vec<BenchResult>> {
    let deps = user_alert_delivery::Deps {
        sns: adapters::aws::sns(&aws.sdk),
        web: user_alert_delivery::connections_client(&aws.sdk, &ws.uri()),
        concurrency: user_alert_delivery::CONCURRENCY,
        dead_letters: dead_letters(db, user_alert_delivery::CONSUMER)?.to_topic(dlq),
        db: db.clone(),
        on_failure: OnFailure::RetryThenDeadLetter(Retry::seed()),
    };
    let mut results = Vec::new();
    for size in [1_000usize, 10_000] {
        let mut times = Vec::new();
        let mut naive_times = Vec::new();
        let mut rss: f64 = 0.0;
        for _ in 0..3 {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO alerts (alert_kind, app_name, title, body, severity, created_by)
                 VALUES ('DEPLOYMENT', 'bank-api', 'statuses', 'b', 'info', 'bench') RETURNING id",
            )
            .fetch_one(db)
            .await?;
            let users: Vec<String> = (0..size).map(|i| format!("status-user-{i}")).collect();
            let values: Vec<String> = users
                .iter()
                .map(|u| json!({"alertId": id, "userId": u}).to_string())
                .collect();
            let event = kafka_event(topic, 0, STAMP_MS, &values)?;
            reset_peak_rss();
            let started = Instant::now();
            let summary = user_alert_delivery::handle(event, &deps).await?;
            times.push(started.elapsed());
            rss = rss.max(peak_rss_mib());
            anyhow::ensure!(summary.applied == size, "applied {}", summary.applied);

            let naive_id: i64 = sqlx::query_scalar(
                "INSERT INTO alerts (alert_kind, app_name, title, body, severity, created_by)
                 VALUES ('DEPLOYMENT', 'bank-api', 'naive', 'b', 'info', 'bench') RETURNING id",
            )
            .fetch_one(db)
            .await?;
            let started = Instant::now();
            anyhow::ensure!(naive_statuses(db, naive_id, &users).await? == size);
            naive_times.push(started.elapsed());
        }
        times.sort();
        naive_times.sort();
        let per_s = size as f64 / times[1].as_secs_f64();
        let naive_per_s = size as f64 / naive_times[1].as_secs_f64();
        println!(
            "user-alert-delivery statuses, batch {size:>6}: {per_s:>8.0}/s (target 20,000; naive one by one {naive_per_s:.0}/s, {:.0}x; seed {SEED_KAFKA_PER_S} alerts/s)  peak RSS {rss:.0} MiB",
            per_s / naive_per_s
        );
        results.push(BenchResult {
            name: format!("user-alert-delivery statuses/s (batch {size})"),
            unit: "statuses/s".into(),
            value: per_s,
            baselines: BTreeMap::from([
                ("naive one by one".into(), naive_per_s),
                ("target".into(), 20_000.0),
            ]),
        });
        results.push(BenchResult {
            name: format!("user-alert-delivery peak RSS (batch {size})"),
            unit: "MiB".into(),
            value: rss,
            baselines: BTreeMap::new(),
        });
    }

    // The channels: every user of a 2,000-record batch has one WebSocket connection.
    const USERS: usize = 2_000;
    sqlx::query("INSERT INTO ws_connections (connection_id, user_id) SELECT 'c-' || i, 'web-user-' || i FROM generate_series(1, $1) i")
        .bind(USERS as i64)
        .execute(db)
        .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (alert_kind, app_name, title, body, severity, created_by)
         VALUES ('DEPLOYMENT', 'bank-api', 'web', 'b', 'info', 'bench') RETURNING id",
    )
    .fetch_one(db)
    .await?;
    let values: Vec<String> = (1..=USERS)
        .map(|i| json!({"alertId": id, "userId": format!("web-user-{i}")}).to_string())
        .collect();
    let event = kafka_event(topic, 0, STAMP_MS, &values)?;
    let started = Instant::now();
    let summary = user_alert_delivery::handle(event, &deps).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(summary.applied == USERS, "applied {}", summary.applied);
    anyhow::ensure!(
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM user_alert_deliveries WHERE alert_id = $1 AND state = 'delivered'"
        )
        .bind(id)
        .fetch_one(db)
        .await?
            == USERS as i64
    );
    let per_s = USERS as f64 / elapsed.as_secs_f64();
    println!(
        "user-alert-delivery web, {USERS} users, {} in flight: {per_s:>8.0} statuses+deliveries/s (a local endpoint; API Gateway's own latency is not in it)",
        user_alert_delivery::CONCURRENCY
    );
    results.push(BenchResult {
        name: "user-alert-delivery web deliveries/s (32 in flight, local endpoint)".into(),
        unit: "deliveries/s".into(),
        value: per_s,
        baselines: BTreeMap::from([("seed on Kafka".into(), SEED_KAFKA_PER_S)]),
    });
    Ok(results)
}

async fn connections(db: &PgPool) -> anyhow::Result<Vec<BenchResult>> {
    const CONNECTS: usize = 1_000;
    let deps = alert_connections::Deps {
        db: db.clone(),
        verifier: integration_tests::local_issuer_keys().await?,
    };
    let token = integration_tests::token("bench-user", integration_tests::LOCAL_AUDIENCE, 600)?;
    reset_peak_rss();
    let started = Instant::now();
    for i in 0..CONNECTS {
        let allowed = alert_connections::handle(
            json!({"type": "REQUEST", "methodArn": "arn:aws:execute-api:ap-northeast-2:1:api/v1/$connect",
                   "queryStringParameters": {"token": token}}),
            &deps,
        )
        .await?;
        anyhow::ensure!(allowed["policyDocument"]["Statement"][0]["Effect"] == "Allow");
        alert_connections::handle(
            json!({"requestContext": {"routeKey": "$connect", "connectionId": format!("bench-{i}"),
                   "authorizer": {"principalId": "bench-user", "userId": "bench-user"}}}),
            &deps,
        )
        .await?;
    }
    let elapsed = started.elapsed();
    let rss = peak_rss_mib();
    let per_s = CONNECTS as f64 / elapsed.as_secs_f64();
    println!(
        "alert-connections {CONNECTS} connects (authorize + $connect): {per_s:>8.0}/s  peak RSS {rss:.0} MiB"
    );
    Ok(vec![
        BenchResult {
            name: "alert-connections connects/s (authorize + $connect)".into(),
            unit: "connects/s".into(),
            value: per_s,
            baselines: BTreeMap::new(),
        },
        BenchResult {
            name: "alert-connections peak RSS".into(),
            unit: "MiB".into(),
            value: rss,
            baselines: BTreeMap::new(),
        },
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted = bench_filter();
    if !wanted("alerts") {
        return Ok(());
    }
    let db = TestDb::new().await?;
    let aws = TestAws::new().await?;
    let ws = ConnectionsApi::start(&[], &[]).await;
    let created = unique("bench-alert-created-");
    let users = unique("bench-user-alert-");
    let dlq = unique("bench-alert-dlq-");
    create_topics(&[&created, &users, &dlq]).await?;
    println!("alerts (seed 004: 0.29 alerts/s synchronous, 2.64/s on Kafka, 378 ms per request)");
    let mut results = intake(&db.pool, &created).await?;
    results.extend(fan_out(&db.pool, &users, &dlq).await?);
    results.extend(statuses(&db.pool, &aws, &ws, &users, &dlq).await?);
    results.extend(connections(&db.pool).await?);
    let path = record_bench(&results)?;
    println!("results: {}", path.display());
    Ok(())
}
