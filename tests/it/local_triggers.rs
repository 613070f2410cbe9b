//! The local event sources (`local-triggers`) against the real broker and the local AWS
//! endpoint. MSK: records produced to a topic are consumed, handed to the function as
//! `KafkaEvent` batches over the Lambda invoke API, and committed only after the invocation
//! succeeded; the "function" is an invoke endpoint that runs performance-metrics' real handler
//! against a database of the test's own, and fails its first invocation. SQS and Scheduler:
//! the function is a wiremock invoke endpoint that answers as the test decides.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use integration_tests::{
    TestAws, TestDb, create_topics, invoke_endpoint, kafka_brokers, repo_root, unique,
};
use local_triggers::invoke::Invoker;
use local_triggers::msk;
use local_triggers::template::{MskErrorHandling, MskSource, Sources};
use performance_metrics::{CONSUMER, Deps, handle};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

/// An invoke endpoint for performance-metrics that fails its first invocation, as a function
/// would on a transient error; returns its base URL and invocation counter.
async fn function_endpoint(deps: Arc<Deps>) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let base = invoke_endpoint(move |event| {
        let deps = Arc::clone(&deps);
        let call = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if call == 0 {
                return json!({"errorType": "Retryable", "errorMessage": "database unreachable"});
            }
            integration_tests::invocation_answer(event, |event| handle(event, &deps)).await
        }
    })
    .await?;
    Ok((base, calls))
}

/// Runs the MSK source until its topic has been quiet for `idle_secs`.
async fn consume(
    source: &MskSource,
    invoker: &Invoker,
    aws: &TestAws,
    idle_secs: u64,
) -> anyhow::Result<local_triggers::report::Tally> {
    let idle = Some(Duration::from_secs(idle_secs));
    msk::run(source, &kafka_brokers(), invoker, &aws.sqs, idle).await
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
        // A header with bytes of 0x80 and above, as a Java producer's trace ids have: the
        // event carries them as signed bytes, or the function could not read the batch.
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "trace",
            value: Some(&[0x01_u8, 0x80, 0xfe, 0xff][..]),
        });
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("1")
                    .payload(&value)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)?;
    }

    let source = MskSource {
        function: "performance-metrics".to_owned(),
        event: "Stream".to_owned(),
        topics: vec![topic.clone()],
        group: unique("g-"),
        batch_size: 3,
        window: Duration::from_millis(300),
        from_start: true,
        on_error: MskErrorHandling::default(),
    };
    let invoker = Invoker::new(&invoke_base)?;
    let aws = TestAws::new().await?;
    let tally = consume(&source, &invoker, &aws, 3).await?;
    assert_eq!(tally.taken, 7, "{tally:?}");
    assert_eq!(
        tally.deliveries, 4,
        "batches of at most 3, one retried: {tally:?}"
    );
    assert_eq!(tally.failed_invocations, 1, "the failed batch was retried");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        db.count("SELECT count(*) FROM performance_metrics").await?,
        7
    );

    // The group's offsets were committed: running it again delivers nothing.
    let again = consume(&source, &invoker, &aws, 3).await?;
    assert_eq!(again.records, 0, "{again:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    Ok(())
}

/// The local sources are read from the template as `make up` expanded it, resolved through
/// the stack's resources: one per SQS, MSK and ScheduleV2 event.
#[test]
fn the_template_declares_every_trigger() -> anyhow::Result<()> {
    let sources = Sources::read(
        &repo_root().join(".stack/template.local.json"),
        &repo_root().join(".stack/resources.json"),
    )?;
    let budget = sources
        .msk
        .iter()
        .find(|s| s.function == "budget-sync")
        .context("budget-sync source")?;
    assert_eq!(budget.topics, ["budget-management"]);
    assert_eq!(budget.group, "budget-sync-processor");
    assert_eq!(budget.batch_size, 1000);
    assert_eq!(budget.window, Duration::from_secs(1));
    assert!(budget.from_start);
    let mut functions: Vec<&str> = sources.msk.iter().map(|s| s.function.as_str()).collect();
    functions.sort_unstable();
    assert_eq!(
        functions,
        [
            "alert-fanout",
            "budget-sync",
            "coupon-issue",
            "performance-metrics",
            "quality-score",
            "user-alert-delivery"
        ]
    );
    let mut queues: Vec<(&str, usize, bool, usize)> = sources
        .sqs
        .iter()
        .map(|s| {
            (
                s.function.as_str(),
                s.batch_size,
                s.report_item_failures,
                s.max_concurrency,
            )
        })
        .collect();
    queues.sort_unstable();
    assert_eq!(
        queues,
        [
            ("cdp-worker", 2, true, 5),
            ("webtoon-sync", 10, true, 10),
            ("webtoon-sync", 10, true, 10)
        ]
    );
    assert!(sources.sqs.iter().all(|s| s.queue_url.starts_with("http")));
    let mut jobs: Vec<(&str, String)> = sources
        .schedules
        .iter()
        .map(|s| (s.function.as_str(), s.schedule.expression.clone()))
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        [
            ("alert-intake", "rate(1 minute)".to_owned()),
            ("budget-settlement", "cron(0 3 * * ? *)".to_owned()),
            ("cdp-orchestrator", "cron(0/5 * * * ? *)".to_owned()),
            ("cdp-orchestrator", "cron(2/10 * * * ? *)".to_owned()),
            ("daily-collection", "cron(0 2 * * ? *)".to_owned()),
            ("daily-rollup", "cron(0 2 * * ? *)".to_owned()),
            ("monthly-report", "cron(0 4 1 * ? *)".to_owned()),
            ("recommendations", "cron(30 2 * * ? *)".to_owned()),
            ("retention", "cron(0 4 * * ? *)".to_owned()),
            ("weekly-analysis", "cron(0 3 ? * MON *)".to_owned()),
        ]
    );
    // The nightly jobs park undeliverable events; the outbox flush has nothing to park.
    assert!(
        sources
            .schedules
            .iter()
            .all(|s| s.invoke.dead_letter_url.is_some() == (s.function != "alert-intake"))
    );
    Ok(())
}

/// A wiremock invoke endpoint for a function named `worker`: each invocation's event is
/// answered by `answer`.
async fn worker_endpoint(
    answer: impl Fn(&serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/2015-03-31/functions/worker/invocations"))
        .respond_with(move |request: &wiremock::Request| {
            let event: serde_json::Value =
                serde_json::from_slice(&request.body).unwrap_or_default();
            wiremock::ResponseTemplate::new(200).set_body_json(answer(&event))
        })
        .mount(&server)
        .await;
    server
}

/// The bodies of every SQS record the endpoint was invoked with, in order.
async fn delivered_bodies(server: &wiremock::MockServer) -> Vec<String> {
    let mut bodies = Vec::new();
    for request in server.received_requests().await.unwrap_or_default() {
        let event: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        for record in event["Records"].as_array().into_iter().flatten() {
            bodies.push(record["body"].as_str().unwrap_or_default().to_owned());
        }
    }
    bodies
}

async fn send(aws: &TestAws, queue: &str, bodies: &[&str]) -> anyhow::Result<()> {
    for body in bodies {
        aws.sqs
            .send_message()
            .queue_url(queue)
            .message_body(*body)
            .send()
            .await?;
    }
    Ok(())
}

fn sqs_source(queue_url: &str) -> local_triggers::template::SqsSource {
    local_triggers::template::SqsSource {
        function: "worker".to_owned(),
        event: "Requests".to_owned(),
        queue_url: queue_url.to_owned(),
        batch_size: 10,
        window: Duration::from_millis(500),
        report_item_failures: true,
        max_concurrency: 2,
    }
}

/// ReportBatchItemFailures: the good messages are delivered once and deleted; the failures are
/// redelivered after the visibility timeout, and past `maxReceiveCount` end in the DLQ.
#[tokio::test]
async fn sqs_redelivers_only_the_reported_failures_until_the_dlq_takes_them() -> anyhow::Result<()>
{
    let mut aws = TestAws::new().await?;
    aws.queue_with_dlq("worker", 2).await?;
    let queue = aws.queue_url("worker").to_owned();
    send(
        &aws,
        &queue,
        &["good-1", "poison-1", "good-2", "good-3", "poison-2"],
    )
    .await?;
    let server = worker_endpoint(|event| {
        let failures: Vec<serde_json::Value> = event["Records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["body"].as_str().is_some_and(|b| b.starts_with("poison")))
            .map(|r| json!({"itemIdentifier": r["messageId"]}))
            .collect();
        json!({"batchItemFailures": failures})
    })
    .await;
    let invoker = Invoker::new(&server.uri())?;
    let tally = local_triggers::sqs::run(
        &sqs_source(&queue),
        &aws.sqs,
        &invoker,
        Some(Duration::from_secs(7)),
    )
    .await?;

    let bodies = delivered_bodies(&server).await;
    let times = |body: &str| bodies.iter().filter(|b| *b == body).count();
    for good in ["good-1", "good-2", "good-3"] {
        assert_eq!(times(good), 1, "{good} delivered once: {bodies:?}");
    }
    for poison in ["poison-1", "poison-2"] {
        assert_eq!(
            times(poison),
            2,
            "{poison} delivered maxReceiveCount times: {bodies:?}"
        );
    }
    assert_eq!(tally.taken, 3, "{tally:?}");
    assert_eq!(tally.failed_invocations, 0);
    assert!(
        aws.drain_bodies("worker").await?.is_empty(),
        "nothing left on the queue"
    );
    let mut parked = aws.drain_bodies("worker-dlq").await?;
    parked.sort();
    assert_eq!(parked, ["poison-1", "poison-2"]);
    Ok(())
}

/// A failed invocation deletes nothing: the whole batch comes back and is never skipped.
#[tokio::test]
async fn sqs_retries_a_failed_invocation_and_never_skips_it() -> anyhow::Result<()> {
    let mut aws = TestAws::new().await?;
    aws.queue_with_dlq("worker", 5).await?;
    let queue = aws.queue_url("worker").to_owned();
    send(&aws, &queue, &["a", "b", "c"]).await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let server = worker_endpoint(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            json!({"errorType": "Retryable", "errorMessage": "database unreachable"})
        } else {
            json!({"batchItemFailures": []})
        }
    })
    .await;
    let invoker = Invoker::new(&server.uri())?;
    let tally = local_triggers::sqs::run(
        &sqs_source(&queue),
        &aws.sqs,
        &invoker,
        Some(Duration::from_secs(7)),
    )
    .await?;
    let mut bodies = delivered_bodies(&server).await;
    bodies.sort();
    assert_eq!(
        bodies,
        ["a", "a", "b", "b", "c", "c"],
        "delivered, failed, delivered again"
    );
    assert_eq!((tally.failed_invocations, tally.taken), (1, 3), "{tally:?}");
    assert!(aws.drain_bodies("worker").await?.is_empty());
    assert!(aws.drain_bodies("worker-dlq").await?.is_empty());
    Ok(())
}

/// `function`'s schedule as the template declares it, delivered to the test's `worker`.
fn template_schedule(function: &str) -> anyhow::Result<local_triggers::template::ScheduleSource> {
    let sources = Sources::read(
        &repo_root().join(".stack/template.local.json"),
        &repo_root().join(".stack/resources.json"),
    )?;
    let mut schedule = sources
        .schedules
        .into_iter()
        .find(|s| s.function == function)
        .with_context(|| format!("{function}'s schedule"))?;
    schedule.function = "worker".to_owned();
    Ok(schedule)
}

fn local_account() -> local_triggers::scheduler::Account {
    local_triggers::scheduler::Account {
        region: "ap-northeast-2".to_owned(),
        account_id: "123456789012".to_owned(),
    }
}

/// The template's nightly rollup fired as if at 02:00 in Seoul on 21 November: its input names
/// the instant in UTC. A run that keeps failing is tried 1 + MaximumRetryAttempts times, then
/// its invocation record goes to the on-failure destination.
#[tokio::test]
async fn a_schedule_fires_with_its_input_and_parks_a_run_that_keeps_failing() -> anyhow::Result<()>
{
    use local_triggers::scheduler::{self, Backoff, Fired};
    let mut aws = TestAws::new().await?;
    let mut nightly = template_schedule("daily-rollup")?;
    aws.queue_with_dlq("parked", 5).await?;
    nightly.invoke.dead_letter_url = Some(aws.queue_url("parked").to_owned());
    let account = local_account();
    let backoff = Backoff {
        run_retries: vec![Duration::from_millis(10)],
        delivery_retry: Duration::from_millis(10),
    };
    let at: chrono::DateTime<chrono::Utc> = "2026-11-21T02:00:00+09:00".parse()?;

    let fire = |uri: String| {
        let (nightly, aws, account, backoff) = (&nightly, &aws, &account, &backoff);
        async move {
            let invoker = Invoker::new(&uri)?;
            scheduler::fire(nightly, at, &invoker, &aws.sqs, account, backoff).await
        }
    };

    let ok = worker_endpoint(|event| json!({"received": event})).await;
    let (fired, _) = fire(ok.uri()).await?;
    assert_eq!(
        fired,
        Fired::Ran {
            attempt: 1,
            returned: json!({"received": {"scheduled_time": "2026-11-20T17:00:00Z"}})
        }
    );

    let failing =
        worker_endpoint(|_| json!({"errorType": "Retryable", "errorMessage": "database down"}))
            .await;
    let (fired, tally) = fire(failing.uri()).await?;
    assert!(
        matches!(
            &fired,
            Fired::Failed {
                attempts: 3,
                parked: true,
                ..
            }
        ),
        "{fired:?}"
    );
    assert_eq!(tally.failed_invocations, 3);
    let records = aws.drain("parked").await?;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(
        record["requestPayload"]["scheduled_time"],
        "2026-11-20T17:00:00Z"
    );
    assert_eq!(record["responsePayload"]["errorMessage"], "database down");
    Ok(())
}

/// The template's provisioned-mode error handling: a batch with a record the function fails
/// on is split until that record is alone, retried `MaximumRetryAttempts` times, then
/// discarded with its record on the on-failure queue; a record older than
/// `MaximumRecordAgeInSeconds` is discarded unsent; the rest is taken once and committed. The
/// producer compresses with zstd, which the source must read.
#[tokio::test]
async fn msk_bisects_retries_and_parks_what_it_discards() -> anyhow::Result<()> {
    use base64::Engine as _;
    let mut aws = TestAws::new().await?;
    aws.queue_with_dlq("parked", 5).await?;
    let topic = unique("t-worker-");
    create_topics(&[&topic]).await?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("compression.codec", "zstd")
        .create()?;
    let hours_ago = chrono::Utc::now().timestamp_millis() - 2 * 3_600_000;
    for (value, timestamp) in [
        ("ok-0", None),
        ("old", Some(hours_ago)),
        ("ok-2", None),
        ("poison", None),
        ("ok-4", None),
    ] {
        let mut record = FutureRecord::<str, str>::to(&topic)
            .partition(0)
            .payload(value);
        if let Some(timestamp) = timestamp {
            record = record.timestamp(timestamp);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(err, _)| err)?;
    }
    let values = |event: &serde_json::Value| -> Vec<String> {
        event["records"]
            .as_object()
            .into_iter()
            .flat_map(|partitions| partitions.values())
            .flat_map(|records| records.as_array().cloned().unwrap_or_default())
            .filter_map(|record| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(record["value"].as_str()?)
                    .ok()?;
                String::from_utf8(raw).ok()
            })
            .collect()
    };
    let server = worker_endpoint(move |event| {
        if values(event).iter().any(|v| v == "poison") {
            json!({"errorType": "Retryable", "errorMessage": "cannot take poison"})
        } else {
            json!({"ok": true})
        }
    })
    .await;
    let source = MskSource {
        function: "worker".to_owned(),
        event: "Kafka".to_owned(),
        topics: vec![topic.clone()],
        group: unique("g-"),
        batch_size: 10,
        window: Duration::from_millis(500),
        from_start: true,
        on_error: MskErrorHandling {
            max_retries: Some(1),
            max_record_age: Some(Duration::from_secs(3_600)),
            bisect: true,
            on_failure_url: Some(aws.queue_url("parked").to_owned()),
        },
    };
    let invoker = Invoker::new(&server.uri())?;
    let tally = consume(&source, &invoker, &aws, 4).await?;
    assert_eq!(tally.taken, 3, "ok-0, ok-2 and ok-4: {tally:?}");

    let mut records = aws.drain("parked").await?;
    records.sort_by_key(|r| r["KafkaBatchInfo"]["offset"].as_i64());
    let discarded: Vec<(i64, &str, i64)> = records
        .iter()
        .map(|r| {
            (
                r["KafkaBatchInfo"]["offset"].as_i64().unwrap_or(-1),
                r["requestContext"]["condition"]
                    .as_str()
                    .unwrap_or_default(),
                r["KafkaBatchInfo"]["batchSize"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        discarded,
        [
            (1, "RecordAgeExceeded", 1),
            (3, "RetryAttemptsExhausted", 1)
        ]
    );
    assert_eq!(records[1]["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(records[1]["KafkaBatchInfo"]["topic"], topic.as_str());

    // Discarded is committed too: nothing is delivered again.
    let again = consume(&source, &invoker, &aws, 3).await?;
    assert_eq!(again.records, 0, "{again:?}");
    Ok(())
}

/// The scheduler source's own loop: a one-time schedule two seconds ahead, written in Seoul's
/// wall-clock time, fires once at that instant with it in its input, then the source ends.
#[tokio::test]
async fn a_schedule_in_seoul_fires_at_its_instant() -> anyhow::Result<()> {
    use local_triggers::cron::Schedule;
    use local_triggers::scheduler::{self, Backoff};
    let aws = TestAws::new().await?;
    let mut once = template_schedule("retention")?;
    let seoul: chrono_tz::Tz = "Asia/Seoul".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let due = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .with_timezone(&seoul)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    once.schedule = Schedule::parse(&format!("at({due})"), "Asia/Seoul")?;
    let server = worker_endpoint(|event| json!({"received": event})).await;
    let tally = scheduler::run(
        &once,
        &Invoker::new(&server.uri())?,
        &aws.sqs,
        &local_account(),
        &Backoff::default(),
    )
    .await?;
    let fired_at = chrono::Utc::now();
    assert_eq!(tally.deliveries, 1);
    let requests = server.received_requests().await.unwrap_or_default();
    let event: serde_json::Value = serde_json::from_slice(&requests[0].body)?;
    let scheduled: chrono::DateTime<chrono::Utc> = event["scheduled_time"]
        .as_str()
        .context("scheduled_time")?
        .parse()?;
    let local: chrono::NaiveDateTime =
        chrono::NaiveDateTime::parse_from_str(&due, "%Y-%m-%dT%H:%M:%S")?;
    assert_eq!(scheduled.with_timezone(&seoul).naive_local(), local);
    let late = fired_at.signed_duration_since(scheduled);
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::seconds(2),
        "fired {late} after its time"
    );
    Ok(())
}
