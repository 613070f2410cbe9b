//! `make bench`: what the local event sources (`local-triggers`) cost. The same records go to
//! the same function twice: once through the source (the local broker or moto's SQS, the event
//! built, an HTTP invoke to an endpoint in this process that runs the function's real handler,
//! the commit or delete), once by calling the handler directly with the same batches. MSK:
//! performance-metrics, 20,000 windows in batches of 1,000; SQS: webtoon-sync, 1,000
//! metadata-only create requests in batches of 10 with the template's 10 pollers. A source's
//! time is from its start to its return, less the idle wait that ends it. Figures go to stdout
//! and target/bench/results.json; there is no pass/fail.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use integration_tests::{
    BenchResult, TestAws, TestDb, create_topics, invoke_endpoint, kafka_brokers, kafka_event_on,
    record_bench, unique, webtoon_deps,
};
use local_triggers::invoke::Invoker;
use local_triggers::template::{MskErrorHandling, MskSource, SqsSource};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const WINDOWS: usize = 20_000;
const MSK_BATCH: usize = 1_000;
const REQUESTS: usize = 1_000;
const SQS_BATCH: usize = 10;
const IDLE: Duration = Duration::from_secs(2);
/// Records are stamped the day after the windows.
const STAMP_MS: i64 = 1_795_222_800_000;

fn windows() -> Vec<String> {
    (0..WINDOWS)
        .map(|i| {
            json!({
                "campaign_id": 1 + i / 1440, "advertiser_id": 2, "window_size": "1m",
                "window_start": format!("2026-11-20T{:02}:{:02}:00Z", i / 60 % 24, i % 60),
                "impressions": 100, "clicks": 10, "conversions": 1, "cost": 2.5,
            })
            .to_string()
        })
        .collect()
}

fn request(run: &str, i: usize) -> String {
    json!({
        "request_id": format!("bench-{run}-{i}"), "platform": "NAVER",
        "external_id": format!("{run}-{i}"), "requested_at": "2026-11-20T00:00:00Z",
        "title": format!("Bench webtoon {i}"), "status": "ONGOING",
        "episodes": [{"number": 1, "title": "Episode 1", "published_at": "2026-10-01"}],
    })
    .to_string()
}

/// A handler's answer as the invoke API returns it.
fn answer<T: serde::Serialize>(result: Result<T, domain::WorkerError>) -> Value {
    match result {
        Ok(value) => json!(value),
        Err(err) => json!({"errorType": err.kind(), "errorMessage": err.to_string()}),
    }
}

fn row(name: &str, through: f64, direct: f64, unit: &str) -> BenchResult {
    println!(
        "{name:<34} {through:>12.0} {direct:>12.0} {:>9.0} %",
        100.0 * through / direct
    );
    BenchResult {
        name: format!("local-triggers/{name}"),
        unit: unit.to_owned(),
        value: through.round(),
        baselines: BTreeMap::from([("handler-called-directly".to_owned(), direct.round())]),
    }
}

async fn msk(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let aws = TestAws::new().await?;
    let topic = unique("bench-metrics-");
    create_topics(&[&topic, &format!("{topic}-dlq")]).await?;
    let deps = Arc::new(performance_metrics::Deps {
        db: db.pool.clone(),
        dead_letters: integration_tests::dead_letters(&db.pool, performance_metrics::CONSUMER)?,
    });
    let values = windows();

    // Directly: the same batches of 1,000.
    let started = Instant::now();
    for (n, chunk) in values.chunks(MSK_BATCH).enumerate() {
        let event = kafka_event_on(&[(&topic, 0, (n * MSK_BATCH) as i64, chunk)], STAMP_MS)?;
        performance_metrics::handle(event, &deps).await?;
    }
    let direct = WINDOWS as f64 / started.elapsed().as_secs_f64();
    sqlx::query("TRUNCATE performance_metrics")
        .execute(&db.pool)
        .await?;

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("linger.ms", "20")
        .create()?;
    // All enqueued at once, then each delivery awaited.
    let mut deliveries = Vec::with_capacity(values.len());
    for value in &values {
        let record = FutureRecord::<str, str>::to(&topic)
            .partition(0)
            .payload(value);
        deliveries.push(producer.send_result(record).map_err(|(err, _)| err)?);
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(err, _)| err)?;
    }
    let handler_deps = Arc::clone(&deps);
    let base = invoke_endpoint(move |event| {
        let deps = Arc::clone(&handler_deps);
        async move {
            match serde_json::from_value(event) {
                Ok(event) => answer(performance_metrics::handle(event, &deps).await),
                Err(err) => json!({"errorType": "InvalidEvent", "errorMessage": err.to_string()}),
            }
        }
    })
    .await?;
    let source = MskSource {
        function: "performance-metrics".to_owned(),
        event: "Kafka".to_owned(),
        topics: vec![topic.clone()],
        group: unique("bench-"),
        batch_size: MSK_BATCH,
        window: Duration::from_secs(1),
        from_start: true,
        on_error: MskErrorHandling::default(),
    };
    let started = Instant::now();
    let tally = local_triggers::msk::run(
        &source,
        &kafka_brokers(),
        &Invoker::new(&base)?,
        &aws.sqs,
        Some(IDLE),
    )
    .await?;
    let took = started.elapsed().saturating_sub(IDLE);
    anyhow::ensure!(tally.taken == WINDOWS, "{tally:?}");
    results.push(row(
        "msk-performance-metrics-batch-1000",
        WINDOWS as f64 / took.as_secs_f64(),
        direct,
        "records/s",
    ));
    Ok(())
}

async fn sqs(results: &mut Vec<BenchResult>) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let aws = TestAws::new().await?;
    let deps = Arc::new(webtoon_deps(&db, &aws, &[])?);
    let queue = aws.queue_url("webtoon-create-request").to_owned();
    let arn = format!(
        "arn:aws:sqs:ap-northeast-2:123456789012:{}-webtoon-create-request",
        aws.prefix
    );

    // Directly: the same requests, batches of 10, one after another.
    let direct_run = unique("");
    let started = Instant::now();
    for first in (0..REQUESTS).step_by(SQS_BATCH) {
        let records: Vec<Value> = (first..first + SQS_BATCH)
            .map(|i| {
                json!({"messageId": format!("m-{i}"), "body": request(&direct_run, i),
                       "attributes": {"ApproximateReceiveCount": "1"},
                       "eventSource": "aws:sqs", "eventSourceARN": arn})
            })
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records }))?;
        let answer = webtoon_sync::handle(event, &deps).await;
        anyhow::ensure!(answer.batch_item_failures.is_empty(), "direct batch failed");
    }
    let direct = REQUESTS as f64 / started.elapsed().as_secs_f64();

    let run = unique("");
    for first in (0..REQUESTS).step_by(SQS_BATCH) {
        let entries = (first..first + SQS_BATCH)
            .map(|i| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(request(&run, i))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        aws.sqs
            .send_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    let handler_deps = Arc::clone(&deps);
    let base = invoke_endpoint(move |event| {
        let deps = Arc::clone(&handler_deps);
        // webtoon-sync's future is Send, but not provably so through a closure's higher-ranked
        // lifetimes: it runs on a blocking thread of the same runtime instead of being spawned.
        let runtime = tokio::runtime::Handle::current();
        async move {
            let answered =
                tokio::task::spawn_blocking(move || match serde_json::from_value(event) {
                    Ok(event) => json!(runtime.block_on(webtoon_sync::handle(event, &deps))),
                    Err(err) => {
                        json!({"errorType": "InvalidEvent", "errorMessage": err.to_string()})
                    }
                })
                .await;
            answered.unwrap_or_else(
                |err| json!({"errorType": "Panic", "errorMessage": err.to_string()}),
            )
        }
    })
    .await?;
    let source = SqsSource {
        function: "webtoon-sync".to_owned(),
        event: "CreateRequests".to_owned(),
        queue_url: queue,
        batch_size: SQS_BATCH,
        window: Duration::ZERO,
        report_item_failures: true,
        max_concurrency: 10,
    };
    let started = Instant::now();
    let tally =
        local_triggers::sqs::run(&source, &aws.sqs, &Invoker::new(&base)?, Some(IDLE)).await?;
    let took = started.elapsed().saturating_sub(IDLE);
    // At least once: a message moto hands two pollers at once is delivered twice (and the
    // function, idempotent, changes nothing the second time).
    anyhow::ensure!(tally.taken >= REQUESTS, "{tally:?}");
    results.push(row(
        "sqs-webtoon-sync-batch-10",
        REQUESTS as f64 / took.as_secs_f64(),
        direct,
        "messages/s",
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted = integration_tests::bench_filter();
    if !wanted("local-triggers") {
        return Ok(());
    }
    println!("local-triggers: records/s through the local event sources and directly");
    println!(
        "{:<34} {:>12} {:>12} {:>11}",
        "source", "through it", "direct", "of direct"
    );
    let mut results = Vec::new();
    msk(&mut results).await?;
    sqs(&mut results).await?;
    let path = record_bench(&results)?;
    println!("figures written to {}", path.display());
    Ok(())
}
