//! coupon-issue against the real stack: PostgreSQL (directly, and through a proxy that a test
//! cuts to stage an outage) and the Kafka broker (dead letters, redrive).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use adapters::coupons::lookup;
use adapters::kafka::{KafkaBatchSummary, Retry};
use aws_lambda_events::event::kafka::KafkaEvent;
use coupon_issue::{CONSUMER, Deps, handle};
use domain::coupon::Outcome;
use integration_tests::{
    TcpProxy, TestDb, create_topics, db_config, kafka_brokers, kafka_event_on, load_kafka_event,
    read_topic, unique,
};
use sqlx::PgPool;

/// The sample event's records are stamped 2026-11-20T01:00:00Z.
const SAMPLE_TIME_MS: i64 = 1_795_136_400_000;

struct World {
    db: TestDb,
    topic: String,
    dlq: String,
}

impl World {
    async fn new() -> anyhow::Result<Self> {
        let db = TestDb::new().await?;
        let topic = unique("t-coupon-issue-requests-");
        let dlq = unique("t-coupon-issue-dlq-");
        create_topics(&[&topic, &dlq]).await?;
        Ok(Self { db, topic, dlq })
    }

    fn deps_on(&self, db: PgPool, retry: Retry) -> anyhow::Result<Deps> {
        Ok(Deps {
            dead_letters: integration_tests::dead_letters(&db, CONSUMER)?.to_topic(&self.dlq),
            db,
            on_failure: adapters::kafka::OnFailure::RetryThenDeadLetter(retry),
        })
    }

    fn deps(&self) -> anyhow::Result<Deps> {
        self.deps_on(self.db.pool.clone(), Retry::seed())
    }

    /// A coupon with `stock` units, valid through November 2026.
    async fn coupon(&self, id: i64, stock: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO coupons (id, name, total_stock, remaining_stock, valid_from, valid_until)
             VALUES ($1, 'test', $2, $2, '2026-11-01T00:00:00Z', '2026-12-01T00:00:00Z')",
        )
        .bind(id)
        .bind(stock)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Outcomes, grants and stock, as text, for "same state" comparisons.
    async fn state(&self) -> anyhow::Result<Vec<String>> {
        state_of(&self.db.pool).await
    }

    async fn outcome_counts(&self) -> anyhow::Result<HashMap<String, i64>> {
        Ok(
            sqlx::query_as("SELECT outcome, count(*) FROM coupon_issue_outcomes GROUP BY outcome")
                .fetch_all(&self.db.pool)
                .await?
                .into_iter()
                .collect(),
        )
    }
}

async fn state_of(db: &PgPool) -> anyhow::Result<Vec<String>> {
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT 'outcome ' || request_id || ' ' || outcome || ' ' || coalesce(reason, '')
           FROM coupon_issue_outcomes
         UNION ALL
         SELECT 'grant ' || coupon_id || ' ' || user_id || ' ' || request_id FROM user_coupons
         UNION ALL
         SELECT 'stock ' || id || ' ' || remaining_stock FROM coupons",
    )
    .fetch_all(db)
    .await?;
    rows.sort();
    Ok(rows)
}

fn request(id: &str, coupon: i64, user: i64, at: &str) -> String {
    serde_json::json!({"request_id": id, "coupon_id": coupon, "user_id": user, "requested_at": at})
        .to_string()
}

fn counts(summary: &KafkaBatchSummary) -> (usize, usize, usize, usize, usize) {
    (
        summary.records,
        summary.valid,
        summary.applied,
        summary.rejected,
        summary.exhausted,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_issue_past_the_stock_or_twice_to_a_user() -> anyhow::Result<()> {
    const REQUESTS: usize = 45_000;
    const USERS: usize = 40_000;
    const REPEATED: usize = 5_000;
    const STOCK: i64 = 10_000;
    const BATCH: usize = 5_000;
    let w = World::new().await?;
    w.coupon(1, STOCK).await?;

    // Request i is user (i mod 40,000) + 1: users 1..=5,000 ask twice under different ids.
    // Requests alternate between the partitions; 5,000 ids are delivered once more on the
    // other partition, as a client's retry would be.
    let at = |i: usize| {
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00+09:00")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        (start + chrono::TimeDelta::milliseconds(i as i64)).to_rfc3339()
    };
    let value = |i: usize| request(&format!("req-{i}"), 1, (i % USERS) as i64 + 1, &at(i));
    let mut partitions: [Vec<String>; 2] = Default::default();
    for i in 0..REQUESTS {
        partitions[i % 2].push(value(i));
    }
    for i in 20_000..20_000 + REPEATED {
        partitions[(i + 1) % 2].push(value(i));
    }
    assert_eq!(partitions[0].len() + partitions[1].len(), 50_000);

    let events = |partition: usize, batch: usize| -> anyhow::Result<Vec<KafkaEvent>> {
        partitions[partition]
            .chunks(batch)
            .enumerate()
            .map(|(n, chunk)| {
                let first = (n * batch) as i64;
                kafka_event_on(
                    &[(&w.topic, partition as i32, first, chunk)],
                    SAMPLE_TIME_MS + 86_400_000,
                )
            })
            .collect()
    };
    // Two instances, each with its own pool and producer and its own partition: first one
    // invocation of 25,000 records each, at once.
    let whole = |partition| events(partition, partitions[partition].len());
    let instance = |events: Vec<KafkaEvent>| {
        let deps = w.deps_on(
            adapters::db::pool_with(&db_config(), w.db.options.clone()),
            Retry::seed(),
        );
        async move {
            let deps = deps?;
            let mut applied = 0;
            for event in events {
                let summary = handle(event, &deps).await?;
                assert_eq!((summary.rejected, summary.exhausted), (0, 0));
                applied += summary.applied;
            }
            anyhow::Ok(applied)
        }
    };
    let (a, b) = tokio::join!(instance(whole(0)?), instance(whole(1)?));
    assert_eq!(a? + b?, REQUESTS, "every request id recorded once");

    let outcomes = w.outcome_counts().await?;
    assert_eq!(outcomes.get("issued").copied(), Some(STOCK), "{outcomes:?}");
    assert_eq!(outcomes.values().sum::<i64>(), REQUESTS as i64);
    assert!(
        outcomes
            .keys()
            .all(|o| o == "issued" || o == "sold_out" || o == "duplicate")
    );
    assert_eq!(
        w.db.count("SELECT count(*) FROM user_coupons").await?,
        STOCK
    );
    assert_eq!(
        w.db.count("SELECT count(DISTINCT user_id) FROM user_coupons")
            .await?,
        STOCK
    );
    assert_eq!(
        w.db.count("SELECT remaining_stock FROM coupons WHERE id = 1")
            .await?,
        0
    );
    // Every grant is an issued outcome and every issued outcome a grant.
    assert_eq!(
        w.db.count(
            "SELECT count(*) FROM user_coupons u
               JOIN coupon_issue_outcomes o USING (request_id)
              WHERE o.outcome = 'issued' AND o.user_id = u.user_id"
        )
        .await?,
        STOCK
    );

    // Both partitions delivered again in batches of 5,000 (the event source replaying after a
    // lost commit, with other batch boundaries).
    let before = w.state().await?;
    let (a, b) = tokio::join!(instance(events(0, BATCH)?), instance(events(1, BATCH)?));
    assert_eq!(a? + b?, 0, "a replay records nothing");
    assert_eq!(w.state().await?, before);
    Ok(())
}

#[tokio::test]
async fn outcomes_of_the_sample_with_its_poison_record_and_a_replay() -> anyhow::Result<()> {
    let w = World::new().await?;
    w.coupon(3001, 2).await?;
    sqlx::query(
        "INSERT INTO coupons (id, name, total_stock, remaining_stock, valid_from, valid_until)
         VALUES (3002, 'autumn', 10, 10, '2026-10-01T00:00:00Z', '2026-11-15T00:00:00Z')",
    )
    .execute(&w.db.pool)
    .await?;
    let deps = w.deps()?;
    let event = load_kafka_event("coupon-issue.json", "coupon-issue-requests", &w.topic)?;

    let summary = handle(event.clone(), &deps).await?;
    assert_eq!(counts(&summary), (8, 7, 6, 1, 0));
    let id = |n: u8| format!("5f0c1c2e-0001-4a6b-9d1e-00000000000{n}");
    let mut outcomes = Vec::new();
    for n in 1..=6 {
        let answer = lookup(&w.db.pool, &id(n)).await?;
        outcomes.push(answer.map(|a| (a.outcome, a.reason.unwrap_or_default())));
    }
    let expected = [
        Outcome::Issued,
        Outcome::Issued,
        Outcome::Duplicate,
        Outcome::SoldOut,
        Outcome::Expired,
        Outcome::Invalid,
    ];
    for (got, want) in outcomes.iter().zip(expected) {
        assert_eq!(got.as_ref().map(|(o, _)| *o), Some(want), "{outcomes:?}");
    }
    assert!(
        outcomes[5]
            .as_ref()
            .is_some_and(|(_, r)| r.contains("coupon 3999 does not exist"))
    );
    assert!(
        lookup(&w.db.pool, &id(7)).await?.is_none(),
        "the poison record is not a request"
    );

    let dead = read_topic(&w.dlq, 1, Duration::from_secs(10)).await?;
    assert_eq!(dead.len(), 1);
    let headers = &dead[0].headers;
    assert_eq!(headers["dlq.original.topic"], w.topic);
    assert_eq!(headers["dlq.original.partition"], "1");
    assert_eq!(headers["dlq.original.offset"], "20");
    assert_eq!(headers["dlq.attempts"], "1");
    assert!(headers["dlq.error"].contains("invalid type"), "{headers:?}");

    // Delivered again: same outcomes, no new effect, no second dead letter.
    let before = w.state().await?;
    let again = handle(event, &deps).await?;
    assert_eq!(counts(&again), (8, 7, 0, 1, 0));
    assert_eq!(w.state().await?, before);
    assert_eq!(
        read_topic(&w.dlq, 2, Duration::from_secs(3)).await?.len(),
        1
    );

    // More poison beside good records: the good ones are issued, the rest dead-lettered.
    let values = [
        "not json".to_owned(),
        r#"{"request_id": "", "coupon_id": 3001, "user_id": 1, "requested_at": "2026-11-20T10:00:00Z"}"#.to_owned(),
        request("late-1", 3001, 8001, "2026-11-20T10:00:00Z"),
    ];
    w.coupon(3003, 5).await?;
    let values2 = [request("late-2", 3003, 8002, "2026-11-20T10:00:00Z")];
    let event = kafka_event_on(
        &[(&w.topic, 2, 0, &values), (&w.topic, 0, 100, &values2)],
        SAMPLE_TIME_MS + 86_400_000,
    )?;
    let summary = handle(event, &deps).await?;
    assert_eq!(counts(&summary), (4, 2, 2, 2, 0));
    let sold_out = lookup(&w.db.pool, "late-1").await?.map(|a| a.outcome);
    assert_eq!(sold_out, Some(Outcome::SoldOut));
    let issued = lookup(&w.db.pool, "late-2").await?.map(|a| a.outcome);
    assert_eq!(issued, Some(Outcome::Issued));
    let dead = read_topic(&w.dlq, 3, Duration::from_secs(10)).await?;
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .any(|d| d.headers["dlq.error"].contains("request_id is empty"))
    );
    Ok(())
}

/// The state a batch leaves on a fresh database with nothing going wrong.
async fn reference_state(values: &[String]) -> anyhow::Result<Vec<String>> {
    let w = World::new().await?;
    w.coupon(1, 100).await?;
    let event = kafka_event_on(&[(&w.topic, 0, 0, values)], SAMPLE_TIME_MS + 86_400_000)?;
    handle(event, &w.deps()?).await?;
    w.state().await
}

/// A pool reaching the test's database through `proxy`, quick to give up on a connection.
fn outage_batch() -> Vec<String> {
    (0..1_000)
        .map(|i| {
            let at = format!("2026-11-20T10:{:02}:{:02}Z", i / 60 % 60, i % 60);
            request(&format!("o-{i}"), 1, i % 700 + 1, &at)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_batch_is_retried_to_the_same_state() -> anyhow::Result<()> {
    let values = outage_batch();
    let expected = reference_state(&values).await?;

    let w = World::new().await?;
    w.coupon(1, 100).await?;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let through_proxy = proxy.pool_for(&w.db);
    let deps = w.deps_on(through_proxy, Retry::seed())?;
    let event = kafka_event_on(&[(&w.topic, 0, 0, &values)], SAMPLE_TIME_MS + 86_400_000)?;

    // Hold the coupon's row lock so the batch stops inside its transaction, then cut the
    // database away while it waits, and bring it back 1.5 s later.
    let mut blocker = w.db.pool.begin().await?;
    sqlx::query("SELECT 1 FROM coupons WHERE id = 1 FOR UPDATE")
        .execute(&mut *blocker)
        .await?;
    let started = Instant::now();
    let batch = tokio::spawn(async move { handle(event, &deps).await });
    let waiting = "SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'";
    for _ in 0..100 {
        if w.db.count(waiting).await? > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        w.db.count(waiting).await?,
        1,
        "the batch waits on the coupon"
    );
    proxy.cut();
    blocker.rollback().await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.restore();

    let summary = batch.await??;
    assert_eq!(counts(&summary), (1_000, 1_000, 1_000, 0, 0));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it was retried"
    );
    assert_eq!(w.state().await?, expected);
    assert_eq!(
        w.db.count("SELECT count(*) FROM coupon_issue_outcomes WHERE outcome = 'issued'")
            .await?,
        100
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_go_to_the_dlq_and_redrive_issues_them() -> anyhow::Result<()> {
    let w = World::new().await?;
    w.coupon(1, 10).await?;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let through_proxy = proxy.pool_for(&w.db);
    let deps = w.deps_on(through_proxy, Retry::seed())?;
    let values = [
        request("d-1", 1, 1, "2026-11-20T10:00:00Z"),
        request("d-2", 1, 2, "2026-11-20T10:00:01Z"),
        request("d-3", 1, 2, "2026-11-20T10:00:02Z"),
        "{".to_owned(),
    ];
    let event = kafka_event_on(&[(&w.topic, 0, 7, &values)], SAMPLE_TIME_MS + 86_400_000)?;

    // The database is down for the whole invocation: 4 attempts over 1 + 2 + 3 s, then every
    // record goes to the DLQ, the malformed one too (its ledger is in the database).
    proxy.cut();
    let started = Instant::now();
    let summary = handle(event, &deps).await?;
    assert_eq!(counts(&summary), (4, 3, 0, 1, 3));
    assert!(started.elapsed() >= Duration::from_secs(6));
    let dead = read_topic(&w.dlq, 4, Duration::from_secs(10)).await?;
    assert_eq!(dead.len(), 4);
    let mut attempts: Vec<(String, String)> = dead
        .iter()
        .map(|d| {
            (
                d.headers["dlq.original.offset"].clone(),
                d.headers["dlq.attempts"].clone(),
            )
        })
        .collect();
    attempts.sort();
    assert_eq!(
        attempts,
        [("10", "1"), ("7", "4"), ("8", "4"), ("9", "4")]
            .map(|(o, a)| (o.to_owned(), a.to_owned()))
    );
    assert!(
        dead.iter()
            .filter(|d| d.headers["dlq.attempts"] == "4")
            .all(|d| d.headers["dlq.error"].contains("transient failure: database")),
        "{:?}",
        dead.iter().map(|d| &d.headers).collect::<Vec<_>>()
    );
    assert!(
        dead.iter()
            .all(|d| d.headers["dlq.original.topic"] == w.topic)
    );

    // The fix: the database is back. Redrive the DLQ to the request topic and consume it.
    proxy.restore();
    let group = unique("redrive-");
    let kafka = adapters::config::KafkaConfig {
        brokers: kafka_brokers(),
        auth: adapters::config::KafkaAuth::Plaintext,
    };
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let redrive = async || devtools::redrive::redrive(&kafka, &sdk, &w.dlq, &group).await;
    let redriven = redrive().await?;
    assert_eq!(redriven.per_topic.get(&w.topic), Some(&4));
    let nothing_new = redrive().await?;
    assert_eq!(nothing_new.total(), 0, "offsets were committed");

    let replayed = read_topic(&w.topic, 4, Duration::from_secs(10)).await?;
    assert_eq!(replayed.len(), 4);
    assert!(
        replayed
            .iter()
            .all(|r| r.headers.contains_key("redrive.from"))
    );
    assert!(
        replayed
            .iter()
            .all(|r| !r.headers.contains_key("dlq.error"))
    );
    let values: Vec<String> = replayed
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    let event = kafka_event_on(&[(&w.topic, 0, 0, &values)], SAMPLE_TIME_MS + 86_400_000)?;
    let summary = handle(event, &deps).await?;
    assert_eq!(counts(&summary), (4, 3, 3, 1, 0));
    let outcome = |id: &'static str| {
        let db = w.db.pool.clone();
        async move { anyhow::Ok(lookup(&db, id).await?.map(|a| a.outcome)) }
    };
    assert_eq!(outcome("d-1").await?, Some(Outcome::Issued));
    assert_eq!(outcome("d-2").await?, Some(Outcome::Issued));
    assert_eq!(outcome("d-3").await?, Some(Outcome::Duplicate));
    assert_eq!(
        w.db.count("SELECT remaining_stock FROM coupons WHERE id = 1")
            .await?,
        8
    );
    Ok(())
}

#[tokio::test]
async fn a_rejection_claimed_elsewhere_past_the_retries_is_sent_not_dropped() -> anyhow::Result<()>
{
    let w = World::new().await?;
    w.coupon(1, 10).await?;
    let values = [request("h-1", 1, 1, "2026-11-20T10:00:00Z"), "{".to_owned()];
    let event = kafka_event_on(&[(&w.topic, 0, 0, &values)], SAMPLE_TIME_MS + 86_400_000)?;
    // Another invocation claimed the malformed record and never marks it sent (it hangs).
    sqlx::query(
        "INSERT INTO kafka_dead_letters (consumer, topic, partition, \"offset\", reason, sent_at)
         VALUES ($1, $2, 0, 1, 'claimed elsewhere', NULL)",
    )
    .bind(CONSUMER)
    .bind(&w.topic)
    .execute(&w.db.pool)
    .await?;
    let quick = Retry {
        backoff: vec![Duration::from_millis(50); 2],
        reserve: Duration::from_millis(10),
    };
    let deps = w.deps_on(w.db.pool.clone(), quick)?;
    // This consumer must not stall its partition: after its retries it sends the held record
    // itself (a possible duplicate, never a loss) and the batch succeeds.
    let summary = handle(event, &deps).await?;
    assert_eq!(counts(&summary), (2, 1, 1, 1, 0));
    let dead = read_topic(&w.dlq, 2, Duration::from_secs(5)).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers["dlq.original.offset"], "1");
    assert_eq!(
        w.db.count("SELECT count(*) FROM kafka_dead_letters WHERE sent_at IS NOT NULL")
            .await?,
        1
    );
    Ok(())
}

/// Issue 31: through a local invocation path — records on the topic, the local MSK source,
/// the Lambda invoke API with coupon-issue's template timeout — a database outage of 1.5 s is
/// retried within the invocation (as Lambda's deadline allows; `cargo lambda watch`'s 1970
/// deadline did not): one invocation, no failed one, nothing dead-lettered, each request
/// decided once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_through_the_local_invoke_path_is_retried_within_the_invocation()
-> anyhow::Result<()> {
    use local_triggers::invoke::Invoker;
    use local_triggers::msk;
    use local_triggers::template::{MskErrorHandling, MskSource};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use serde_json::Value;
    use std::sync::Arc;

    let w = World::new().await?;
    sqlx::query(
        "INSERT INTO coupons (id, name, total_stock, remaining_stock, valid_from, valid_until)
         VALUES (7, 'local', 10, 10, now() - interval '1 day', now() + interval '30 days')",
    )
    .execute(&w.db.pool)
    .await?;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let deps = Arc::new(w.deps_on(proxy.pool_for(&w.db), Retry::seed())?);
    let base =
        integration_tests::invoke_endpoint(move |event: Value| {
            let deps = Arc::clone(&deps);
            async move {
                integration_tests::invocation_answer(event, |event| handle(event, &deps)).await
            }
        })
        .await?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()?;
    let now = chrono::Utc::now().to_rfc3339();
    for user in 1..=3 {
        let value = request(&format!("local-{user}"), 7, user, &now);
        producer
            .send(
                FutureRecord::to(&w.topic)
                    .key(&user.to_string())
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)?;
    }
    let source = MskSource {
        function: "coupon-issue".to_owned(),
        event: "Stream".to_owned(),
        topics: vec![w.topic.clone()],
        group: unique("g-"),
        batch_size: 10,
        window: Duration::from_millis(300),
        from_start: true,
        on_error: MskErrorHandling::default(),
    };
    let aws = integration_tests::TestAws::new().await?;
    proxy.cut();
    let restore = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        proxy.restore();
        proxy
    });
    let tally = msk::run(
        &source,
        &kafka_brokers(),
        &Invoker::new(&base)?,
        &aws.sqs,
        Some(Duration::from_secs(3)),
    )
    .await?;
    let _proxy = restore.await?;
    assert_eq!((tally.taken, tally.failed_invocations), (3, 0), "{tally:?}");
    assert_eq!(
        w.db.count("SELECT count(*) FROM coupon_issue_outcomes WHERE outcome = 'issued'")
            .await?,
        3
    );
    assert!(
        read_topic(&w.dlq, 1, Duration::from_secs(2))
            .await?
            .is_empty(),
        "nothing dead-lettered"
    );
    Ok(())
}
