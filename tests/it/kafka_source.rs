//! The local MSK event source against the real broker: records produced to a topic are
//! consumed, handed to the function as `KafkaEvent` batches over the Lambda invoke API, and
//! committed only after the invocation succeeded. The "function" here is an invoke endpoint
//! that runs performance-metrics' real handler against a database of the test's own, and
//! fails its first invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use devtools::kafka_source::{Endpoints, Source, run, sources_from_template};
use integration_tests::{TestDb, create_topics, kafka_brokers, repo_root, unique};
use performance_metrics::{CONSUMER, Deps, handle};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Reads one HTTP request's body (the invoke API sends a Content-Length).
async fn read_body(socket: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    loop {
        let n = socket.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Ok(buf[end + 4..end + 4 + length].to_vec());
        }
    }
}

/// An invoke endpoint for performance-metrics; returns its base URL and invocation counter.
async fn function_endpoint(deps: Arc<Deps>) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let deps = Arc::clone(&deps);
            let call = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (status, body) = match read_body(&mut socket).await {
                    // The first invocation fails, as a function would on a transient error.
                    Ok(_) if call == 0 => (
                        200,
                        json!({"errorType": "Retryable", "errorMessage": "database unreachable"}),
                    ),
                    Ok(body) => match serde_json::from_slice(&body) {
                        Ok(event) => match handle(event, &deps).await {
                            Ok(summary) => (200, json!(summary)),
                            Err(err) => (
                                200,
                                json!({"errorType": err.kind(), "errorMessage": err.to_string()}),
                            ),
                        },
                        Err(err) => (400, json!({"errorMessage": err.to_string()})),
                    },
                    Err(err) => (400, json!({"errorMessage": err.to_string()})),
                };
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok((base, calls))
}

#[tokio::test]
async fn produced_consumed_invoked_and_committed_only_after_success() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let topic = unique("t-performance-metrics-");
    create_topics(&[&topic, &format!("{topic}-dlq")]).await?;
    let deps = Arc::new(Deps {
        db: db.pool.clone(),
        dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?,
    });
    let (invoke_base, calls) = function_endpoint(Arc::clone(&deps)).await?;

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()?;
    for minute in 0..7 {
        let value = json!({
            "campaign_id": 1, "advertiser_id": 2, "window_size": "1m",
            "window_start": format!("2026-11-20T10:{minute:02}:00Z"),
            "impressions": 100, "clicks": 10, "conversions": 1, "cost": 2.5,
        })
        .to_string();
        producer
            .send(
                FutureRecord::to(&topic).key("1").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)?;
    }

    let source = Source {
        function: "performance-metrics".to_owned(),
        topics: vec![topic.clone()],
        group: unique("g-"),
        batch_size: 3,
        window: Duration::from_millis(300),
        from_start: true,
    };
    let endpoints = Endpoints {
        brokers: kafka_brokers(),
        invoke_base,
    };
    let stats = run(&source, &endpoints, Some(Duration::from_secs(3))).await?;
    assert_eq!(stats.records, 7, "{stats:?}");
    assert_eq!(stats.batches, 3, "batches of at most 3: {stats:?}");
    assert_eq!(stats.failed_invocations, 1, "the failed batch was retried");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        db.count("SELECT count(*) FROM performance_metrics").await?,
        7
    );

    // The group's offsets were committed: running it again delivers nothing.
    let again = run(&source, &endpoints, Some(Duration::from_secs(3))).await?;
    assert_eq!(again.records, 0, "{again:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    Ok(())
}

/// The local sources are read from the template as `make up` expanded it: one per MSK event.
#[test]
fn the_template_declares_a_source_per_kafka_function() -> anyhow::Result<()> {
    let sources = sources_from_template(&repo_root().join(".stack/template.local.json"))?;
    let budget = sources
        .iter()
        .find(|s| s.function == "budget-sync")
        .context("budget-sync source")?;
    assert_eq!(budget.topics, ["budget-management"]);
    assert_eq!(budget.group, "budget-sync-processor");
    assert_eq!(budget.batch_size, 1000);
    assert_eq!(budget.window, Duration::from_secs(1));
    assert!(budget.from_start);
    let mut functions: Vec<&str> = sources.iter().map(|s| s.function.as_str()).collect();
    functions.sort_unstable();
    assert_eq!(
        functions,
        [
            "budget-sync",
            "coupon-issue",
            "performance-metrics",
            "quality-score"
        ]
    );
    Ok(())
}
