//! performance-metrics against the real stack: PostgreSQL and the Kafka broker (for the
//! dead-letter topic). Good and poison records in one batch, the same batch twice, and a
//! database outage whose retry converges.

use std::time::Duration;

use integration_tests::{TestDb, create_topics, load_kafka_event, read_topic, unique};
use performance_metrics::{CONSUMER, Deps, handle};

struct World {
    db: TestDb,
    topic: String,
    deps: Deps,
}

async fn world() -> anyhow::Result<World> {
    let db = TestDb::new().await?;
    let topic = unique("t-performance-metrics-");
    create_topics(&[&format!("{topic}-dlq")]).await?;
    let deps = deps(&db)?;
    Ok(World { db, topic, deps })
}

/// The function's dependencies on this test's database: call twice for two instances.
fn deps(db: &TestDb) -> anyhow::Result<Deps> {
    Ok(Deps {
        db: db.pool.clone(),
        dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?,
    })
}

#[tokio::test]
async fn good_records_are_stored_and_poison_goes_to_the_dlq_once() -> anyhow::Result<()> {
    let w = world().await?;
    let event = load_kafka_event("performance-metrics.json", "performance-metrics", &w.topic)?;

    let summary = handle(event.clone(), &w.deps).await?;
    assert_eq!(
        (
            summary.records,
            summary.valid,
            summary.applied,
            summary.rejected
        ),
        (6, 4, 3, 2)
    );
    assert_eq!(
        w.db.count("SELECT count(*) FROM performance_metrics")
            .await?,
        3
    );
    let (cost, date): (i64, chrono::NaiveDate) = sqlx::query_as(
        "SELECT cost_micros, window_date FROM performance_metrics WHERE window_size = '1h'",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert_eq!(cost, 2_810_125_000);
    assert_eq!(
        date.to_string(),
        "2026-11-20",
        "14:00 UTC is 23:00 the same day in Seoul"
    );

    let dlq = format!("{}-dlq", w.topic);
    let dead = read_topic(&dlq, 2, Duration::from_secs(10)).await?;
    assert_eq!(dead.len(), 2);
    let mut offsets: Vec<&str> = dead
        .iter()
        .map(|d| d.headers["dlq.original.offset"].as_str())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, ["41", "42"]);
    for record in &dead {
        assert_eq!(record.headers["dlq.original.topic"], w.topic);
        assert_eq!(record.headers["dlq.original.partition"], "1");
        assert_eq!(
            record.headers["source"], "flink",
            "original headers are kept"
        );
        assert!(!record.headers["dlq.error"].is_empty());
    }
    assert!(
        dead.iter()
            .any(|d| d.headers["dlq.error"].contains("exceed impressions"))
    );

    // The same batch again (the event source retried after a lost response): no new rows, no
    // second dead letter.
    let before =
        w.db.count("SELECT count(*) FROM performance_metrics")
            .await?;
    let again = handle(event, &w.deps).await?;
    assert_eq!((again.applied, again.rejected), (0, 2));
    assert_eq!(
        w.db.count("SELECT count(*) FROM performance_metrics")
            .await?,
        before
    );
    assert_eq!(read_topic(&dlq, 3, Duration::from_secs(3)).await?.len(), 2);
    assert_eq!(
        w.db.count("SELECT count(*) FROM kafka_dead_letters")
            .await?,
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_database_outage_fails_the_invocation_and_the_retry_converges() -> anyhow::Result<()> {
    let w = world().await?;
    let event = load_kafka_event("performance-metrics.json", "performance-metrics", &w.topic)?;
    let mut config = integration_tests::db_config();
    config.acquire_timeout = Duration::from_millis(500);
    let down_pool = adapters::db::pool_with(&config, w.db.options.clone().port(1));
    let down = Deps {
        db: down_pool.clone(),
        dead_letters: integration_tests::dead_letters(&down_pool, CONSUMER)?,
    };
    let err = handle(event.clone(), &down)
        .await
        .expect_err("database is down");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        read_topic(&format!("{}-dlq", w.topic), 1, Duration::from_secs(2))
            .await?
            .len(),
        0
    );

    let summary = handle(event, &w.deps).await?;
    assert_eq!((summary.applied, summary.rejected), (3, 2));
    assert_eq!(
        w.db.count("SELECT count(*) FROM performance_metrics")
            .await?,
        3
    );
    Ok(())
}

#[tokio::test]
async fn the_same_batch_at_once_dead_letters_each_record_once() -> anyhow::Result<()> {
    let w = world().await?;
    let event = load_kafka_event("performance-metrics.json", "performance-metrics", &w.topic)?;
    let other = deps(&w.db)?;
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            handle(event.clone(), &w.deps),
            handle(event.clone(), &other)
        );
        for result in [a, b] {
            // The one that finds the other's claims unsent fails, to be retried.
            if let Err(err) = result {
                assert!(err.is_retryable(), "{err}");
            }
        }
    }
    handle(event, &w.deps).await?;
    let dlq = format!("{}-dlq", w.topic);
    assert_eq!(read_topic(&dlq, 3, Duration::from_secs(5)).await?.len(), 2);
    assert_eq!(
        w.db.count("SELECT count(*) FROM kafka_dead_letters WHERE sent_at IS NOT NULL")
            .await?,
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_reason_postgres_cannot_store_is_stored_all_the_same() -> anyhow::Result<()> {
    let w = world().await?;
    let good = r#"{"campaign_id": 1001, "advertiser_id": 501, "window_size": "1m", "window_start": "2026-11-20T15:01:00Z", "impressions": 10, "clicks": 1, "conversions": 0, "cost": 1.5}"#;
    let nul = good.replace(r#""1m""#, r#""5m\u0000""#);
    let huge = good.replace(r#""1m""#, &format!("\"{}\"", "x".repeat(600_000)));
    let array = r#"[1001, 501, "1m", "2026-11-20T15:01:00Z", 10, 1, 0, 1.5]"#;
    let values = [good.to_owned(), nul, huge, array.to_owned()];
    let event = integration_tests::kafka_event(
        &w.topic,
        0,
        chrono::Utc::now().timestamp_millis(),
        &values,
    )?;
    let summary = handle(event, &w.deps).await?;
    assert_eq!((summary.applied, summary.rejected), (1, 3));
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM kafka_dead_letters ORDER BY \"offset\"")
            .fetch_all(&w.db.pool)
            .await?;
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons
            .iter()
            .all(|r| r.len() <= domain::text::MAX_TEXT_BYTES),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("JSON object"), "{reasons:?}");
    Ok(())
}

#[tokio::test]
async fn a_record_too_large_for_the_dlq_goes_to_s3_and_redrive_brings_it_back() -> anyhow::Result<()>
{
    let w = world().await?;
    create_topics(&[&w.topic]).await?;
    let good = r#"{"campaign_id": 1001, "advertiser_id": 501, "window_size": "1m", "window_start": "2026-11-20T15:01:00Z", "impressions": 10, "clicks": 1, "conversions": 0, "cost": 1.5}"#;
    // Over the dead-letter topic's budget, under the client's and broker's 1,000,000 bytes, so
    // the redriven record fits the topic it came from.
    let large = format!("{{\"padding\": \"{}\"}}", "x".repeat(950_000));
    let values = [large.clone(), good.to_owned()];
    let event = integration_tests::kafka_event(
        &w.topic,
        0,
        chrono::Utc::now().timestamp_millis(),
        &values,
    )?;
    let summary = handle(event.clone(), &w.deps).await?;
    assert_eq!((summary.applied, summary.rejected), (1, 1));
    assert_eq!(handle(event, &w.deps).await?.rejected, 1, "a replay");

    let dlq = format!("{}-dlq", w.topic);
    let dead = read_topic(&dlq, 2, Duration::from_secs(5)).await?;
    assert_eq!(dead.len(), 1, "sent once");
    assert_eq!(dead[0].headers["dlq.claim-check"], "s3");
    assert_eq!(dead[0].headers["dlq.original.offset"], "0");
    let claimed: adapters::kafka::ClaimedRecord = serde_json::from_slice(&dead[0].payload)?;
    assert_eq!(claimed.value.size, large.len() as u64);
    assert_eq!(
        claimed.value.object,
        format!("dead-letters/{CONSUMER}/{}/0/0/value", w.topic)
    );
    let s3 = integration_tests::local_s3();
    assert_eq!(claimed.value.fetch(&s3).await?, large.as_bytes());

    let aws = integration_tests::TestAws::new().await?;
    let kafka = adapters::config::KafkaConfig {
        brokers: integration_tests::kafka_brokers(),
        auth: adapters::config::KafkaAuth::Plaintext,
    };
    let group = unique("redrive-");
    let redriven = devtools::redrive::redrive(&kafka, &aws.sdk, &dlq, &group).await?;
    assert_eq!(redriven.per_topic.get(&w.topic), Some(&1));
    let back = read_topic(&w.topic, 1, Duration::from_secs(10)).await?;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].payload, large.as_bytes(), "the original bytes");
    assert!(!back[0].headers.contains_key("dlq.claim-check"));
    Ok(())
}

#[tokio::test]
async fn a_claim_held_by_a_live_invocation_waits_and_an_abandoned_one_is_taken_over()
-> anyhow::Result<()> {
    let w = world().await?;
    let event = load_kafka_event("performance-metrics.json", "performance-metrics", &w.topic)?;
    // Another invocation claimed record 41 a moment ago and has not sent it yet.
    sqlx::query(
        "INSERT INTO kafka_dead_letters (consumer, topic, partition, \"offset\", reason, sent_at)
         VALUES ($1, $2, 1, 41, 'claimed elsewhere', NULL)",
    )
    .bind(CONSUMER)
    .bind(&w.topic)
    .execute(&w.db.pool)
    .await?;
    let err = handle(event.clone(), &w.deps)
        .await
        .expect_err("a live claim holds the batch");
    assert!(err.is_retryable(), "{err}");
    let dlq = format!("{}-dlq", w.topic);
    let dead = read_topic(&dlq, 2, Duration::from_secs(3)).await?;
    assert_eq!(
        dead.iter()
            .map(|d| d.headers["dlq.original.offset"].as_str())
            .collect::<Vec<_>>(),
        ["42"],
        "the other rejection went out"
    );

    // That invocation died: once its claim is older than the timeout, this one sends it.
    sqlx::query(
        "UPDATE kafka_dead_letters SET claimed_at = now() - make_interval(secs => $1)
          WHERE \"offset\" = 41",
    )
    .bind(adapters::kafka::CLAIM_TIMEOUT.as_secs_f64() + 1.0)
    .execute(&w.db.pool)
    .await?;
    let summary = handle(event.clone(), &w.deps).await?;
    assert_eq!(summary.rejected, 2);
    assert_eq!(read_topic(&dlq, 3, Duration::from_secs(3)).await?.len(), 2);
    assert_eq!(
        w.db.count("SELECT count(*) FROM kafka_dead_letters WHERE sent_at IS NOT NULL")
            .await?,
        2
    );
    handle(event, &w.deps).await?;
    assert_eq!(read_topic(&dlq, 3, Duration::from_secs(3)).await?.len(), 2);
    Ok(())
}
