//! budget-sync against the real stack: PostgreSQL, a Redis server of the test's own (so it can
//! be stopped and started again), the Kafka broker (dead letters) and the local SNS endpoint,
//! whose notifications are read back from a subscribed SQS queue.

use std::time::Duration;

use budget_sync::{CONSUMER, Deps, handle};
use chrono::{NaiveDate, Utc};
use domain::budget::{counter_key, status_key};
use domain::calendar::KST;
use integration_tests::{
    RedisServer, TestAws, TestDb, create_topics, kafka_event, read_topic, unique,
};
use redis::AsyncCommands as _;
use secrecy::SecretString;
use serde_json::{Value, json};

struct World {
    db: TestDb,
    aws: TestAws,
    redis: RedisServer,
    topic: String,
    deps: Deps,
    today: NaiveDate,
}

impl World {
    async fn new() -> anyhow::Result<Self> {
        let (db, mut aws, redis) = (
            TestDb::new().await?,
            TestAws::new().await?,
            RedisServer::start().await?,
        );
        let topic = unique("t-budget-management-");
        create_topics(&[&format!("{topic}-dlq")]).await?;
        let operators = aws.subscribed_topic("operator-alerts").await?;
        let redis_config = adapters::config::RedisConfig {
            url: SecretString::from(redis.url()),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            retries: 1,
        };
        let deps = Deps {
            db: db.pool.clone(),
            redis: adapters::redis::connect_lazy(&redis_config)?,
            dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?,
            outbox: adapters::outbox::Outbox::new(
                db.pool.clone(),
                adapters::aws::sns(&aws.sdk),
                CONSUMER,
                operators,
            ),
            redis_budget: Duration::from_secs(3),
        };
        sqlx::query(
            "INSERT INTO campaigns (campaign_id, advertiser_id, daily_budget) VALUES
                 (101, 7, 100000), (102, 7, 100000), (103, 8, 30000), (104, 8, 50000),
                 (201, 9, 40000), (202, 9, NULL)",
        )
        .execute(&db.pool)
        .await?;
        Ok(Self {
            db,
            aws,
            redis,
            topic,
            deps,
            today: Utc::now().with_timezone(&KST).date_naive(),
        })
    }

    /// Messages at `first_offset` on, stamped now.
    fn event(
        &self,
        first_offset: i64,
        values: &[Value],
    ) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        kafka_event(
            &self.topic,
            first_offset,
            Utc::now().timestamp_millis(),
            &values,
        )
    }

    async fn counter(&self, campaign: i64) -> anyhow::Result<Option<i64>> {
        let mut conn = self.redis.connection().await?;
        Ok(conn.get(counter_key(campaign, self.today)).await?)
    }

    async fn set_counter(&self, campaign: i64, value: i64) -> anyhow::Result<()> {
        let mut conn = self.redis.connection().await?;
        let () = conn.set(counter_key(campaign, self.today), value).await?;
        Ok(())
    }

    async fn status(&self, campaign: i64) -> anyhow::Result<Option<String>> {
        let mut conn = self.redis.connection().await?;
        Ok(conn.get(status_key(campaign)).await?)
    }

    async fn corrections(&self) -> anyhow::Result<Vec<(i64, i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT campaign_id, \"offset\", correction FROM budget_sync_accuracy
              ORDER BY \"offset\"",
        )
        .fetch_all(&self.db.pool)
        .await?)
    }

    async fn notifications(&self) -> anyhow::Result<Vec<Value>> {
        self.aws.drain("operator-alerts").await
    }
}

fn sync(campaign: i64, redis_spent: i64, db_spent: i64, pause: bool) -> Value {
    json!({
        "campaign_id": campaign.to_string(), "redis_spent": redis_spent, "db_spent": db_spent,
        "accuracy_ratio": redis_spent.min(db_spent) as f64 / redis_spent.max(db_spent).max(1) as f64,
        "sync_action": "adjust_redis",
        "campaign_action": if pause { "pause_if_exceeded" } else { "none" },
    })
}

#[tokio::test]
async fn corrections_pauses_and_poison_in_one_batch_then_a_replay_and_a_crash() -> anyhow::Result<()>
{
    let w = World::new().await?;
    // The ad servers have spent 300 more since Flink read 50,000 for campaign 102.
    w.set_counter(102, 50_300).await?;
    w.set_counter(103, 20_000).await?;
    let event = w.event(
        0,
        &[
            sync(101, 45_000, 44_750, false), // 0.56 % apart: left alone
            sync(102, 50_000, 40_000, false), // 25 % over: -10,000
            json!({"campaign_id": "abc", "redis_spent": 1, "db_spent": 1}),
            sync(103, 20_000, 30_000, true), // under by a third, and at its budget: paused
            sync(104, 1_000, 1_000, true),   // far below its budget
            json!("not an object"),
        ],
    )?;

    let summary = handle(event.clone(), &w.deps).await?;
    assert_eq!(
        (
            summary.records,
            summary.valid,
            summary.applied,
            summary.rejected
        ),
        (6, 4, 4, 2)
    );
    assert_eq!(w.counter(101).await?, None, "no correction, no counter");
    assert_eq!(
        w.counter(102).await?,
        Some(40_300),
        "the increment made meanwhile survives"
    );
    assert_eq!(w.counter(103).await?, Some(30_000));
    assert_eq!(w.status(103).await?.as_deref(), Some("paused"));
    assert_eq!(w.status(104).await?, None);
    let statuses: Vec<(i64, String)> = sqlx::query_as(
        "SELECT campaign_id, status FROM campaigns WHERE campaign_id IN (103, 104) ORDER BY 1",
    )
    .fetch_all(&w.db.pool)
    .await?;
    assert_eq!(
        statuses,
        [(103, "paused".to_owned()), (104, "active".to_owned())]
    );
    assert_eq!(
        w.corrections().await?,
        [
            (101, 0, "none".to_owned()),
            (102, 1, "applied".to_owned()),
            (103, 3, "applied".to_owned()),
            (104, 4, "none".to_owned()),
        ]
    );
    let notified = w.notifications().await?;
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(notified[0]["type"], "campaign_paused");
    assert_eq!(notified[0]["campaign_id"], 103);
    let dead = read_topic(&format!("{}-dlq", w.topic), 2, Duration::from_secs(10)).await?;
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .any(|d| d.headers["dlq.error"].contains("not an integer")),
        "{dead:?}"
    );
    assert_eq!(dead[0].headers["dlq.consumer"], CONSUMER);

    // The same batch again: nothing recorded, corrected, paused, notified or dead-lettered.
    let again = handle(event.clone(), &w.deps).await?;
    assert_eq!(again.applied, 0);
    assert_eq!(w.counter(102).await?, Some(40_300));
    assert_eq!(w.counter(103).await?, Some(30_000));
    assert!(w.notifications().await?.is_empty());
    assert_eq!(w.db.count("SELECT count(*) FROM campaign_pauses").await?, 1);
    assert_eq!(
        w.db.count("SELECT count(*) FROM kafka_dead_letters")
            .await?,
        2
    );

    // A crash after Redis took the corrections but before they were marked: the next batch
    // finds them queued again, and the per-message markers keep Redis from taking them twice.
    sqlx::query(
        "UPDATE budget_sync_accuracy SET correction = 'pending' WHERE correction = 'applied'",
    )
    .execute(&w.db.pool)
    .await?;
    sqlx::query("UPDATE campaign_pauses SET redis_status_at = NULL")
        .execute(&w.db.pool)
        .await?;
    // ... and after SNS took the notification but before the outbox marked it: published
    // again (at least once; readers drop the repeat by its dedup_key).
    sqlx::query("UPDATE outbox SET sent_at = NULL, claimed_at = NULL")
        .execute(&w.db.pool)
        .await?;
    handle(event.clone(), &w.deps).await?;
    assert_eq!(w.counter(102).await?, Some(40_300));
    assert_eq!(w.counter(103).await?, Some(30_000));
    assert_eq!(
        w.db.count("SELECT count(*) FROM budget_sync_accuracy WHERE correction = 'pending'")
            .await?,
        0
    );
    assert_eq!(
        w.notifications().await?.len(),
        1,
        "an unmarked notification is published again by the next batch"
    );

    // A crash after Redis took the batch's corrections but before its rows were written: the
    // redelivery finds no rows and sends the corrections again; the markers turn them away.
    sqlx::query("DELETE FROM budget_sync_accuracy")
        .execute(&w.db.pool)
        .await?;
    assert_eq!(handle(event, &w.deps).await?.applied, 4);
    assert_eq!(w.counter(102).await?, Some(40_300));
    assert_eq!(w.counter(103).await?, Some(30_000));
    assert_eq!(
        w.corrections().await?,
        [
            (101, 0, "none".to_owned()),
            (102, 1, "applied".to_owned()),
            (103, 3, "applied".to_owned()),
            (104, 4, "none".to_owned()),
        ]
    );
    assert_eq!(
        w.db.count("SELECT count(*) FROM campaign_pauses").await?,
        1,
        "the campaign was already paused"
    );
    assert!(w.notifications().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn redis_stopped_mid_test_queues_the_corrections_and_a_later_batch_applies_them()
-> anyhow::Result<()> {
    let mut w = World::new().await?;
    w.set_counter(201, 20_000).await?;
    let first = handle(w.event(0, &[sync(201, 20_000, 10_000, false)])?, &w.deps).await?;
    assert_eq!(first.applied, 1);
    assert_eq!(w.counter(201).await?, Some(10_000));

    // The ad servers spend 40,000 more, then Redis goes away.
    w.set_counter(201, 50_000).await?;
    w.redis.stop().await?;

    // Two syncs while Redis is down: both recorded, the older one superseded by the newer
    // (it was computed from an earlier reading of the counter), and a pause that is queued
    // for Redis but already done in the DB and notified.
    let down = handle(w.event(1, &[sync(201, 50_000, 41_000, false)])?, &w.deps).await?;
    assert_eq!(down.applied, 1, "the DB side is recorded");
    let down = handle(w.event(2, &[sync(201, 50_000, 40_000, true)])?, &w.deps).await?;
    assert_eq!(down.applied, 1);
    assert_eq!(
        w.corrections().await?,
        [
            (201, 0, "applied".to_owned()),
            (201, 1, "superseded".to_owned()),
            (201, 2, "pending".to_owned()),
        ]
    );
    assert_eq!(
        w.db.count("SELECT count(*) FROM campaigns WHERE campaign_id = 201 AND status = 'paused'")
            .await?,
        1
    );
    assert_eq!(w.notifications().await?.len(), 1);
    // A replay while Redis is still down changes nothing either.
    assert_eq!(
        handle(w.event(2, &[sync(201, 50_000, 40_000, true)])?, &w.deps)
            .await?
            .applied,
        0
    );

    w.redis.start_again().await?;
    assert_eq!(
        w.counter(201).await?,
        Some(50_000),
        "Redis kept its data over the restart"
    );
    // Any later batch drains the queue: the newest correction only, once.
    let later = handle(w.event(3, &[sync(202, 10, 10, false)])?, &w.deps).await?;
    assert_eq!(later.applied, 1);
    assert_eq!(w.counter(201).await?, Some(40_000));
    assert_eq!(w.status(201).await?.as_deref(), Some("paused"));
    assert_eq!(
        w.corrections().await?[2],
        (201, 2, "applied".to_owned()),
        "marked once Redis took it"
    );
    handle(w.event(4, &[sync(202, 10, 10, false)])?, &w.deps).await?;
    assert_eq!(w.counter(201).await?, Some(40_000));
    assert!(w.notifications().await?.is_empty(), "notified only once");
    Ok(())
}

#[tokio::test]
async fn a_correction_redis_refuses_is_recorded_refused_never_applied() -> anyhow::Result<()> {
    let mut w = World::new().await?;
    w.set_counter(101, 20_000).await?;
    w.set_counter(102, i64::MAX - 10).await?;
    let mut redis = w.redis.connection().await?;
    let () = redis.set(counter_key(103, w.today), "garbage").await?;

    // 101 is corrected; 102's counter would overflow and 103's is not a number: neither
    // fails the batch, and neither is taken for applied.
    let event = w.event(
        0,
        &[
            sync(101, 20_000, 10_000, false),
            sync(102, 1_000, 100_000, false),
            sync(103, 1_000, 100_000, false),
        ],
    )?;
    let summary = handle(event.clone(), &w.deps).await?;
    assert_eq!((summary.applied, summary.rejected), (3, 0));
    assert_eq!(
        w.corrections().await?,
        [
            (101, 0, "applied".to_owned()),
            (102, 1, "refused".to_owned()),
            (103, 2, "refused".to_owned()),
        ]
    );
    assert_eq!(w.counter(101).await?, Some(10_000));
    assert_eq!(w.counter(102).await?, Some(i64::MAX - 10), "untouched");
    let garbage: Option<String> = redis.get(counter_key(103, w.today)).await?;
    assert_eq!(garbage.as_deref(), Some("garbage"));
    let markers: Vec<String> = redis.keys("budget:sync:*").await?;
    assert_eq!(
        markers.len(),
        1,
        "only the applied correction left a marker: {markers:?}"
    );

    // A replay changes nothing.
    assert_eq!(handle(event, &w.deps).await?.applied, 0);
    assert_eq!(w.counter(102).await?, Some(i64::MAX - 10));

    // Queued while Redis was away, refused when it is back: marked refused, not applied.
    w.redis.stop().await?;
    handle(w.event(3, &[sync(102, 2_000, 200_000, false)])?, &w.deps).await?;
    assert_eq!(w.corrections().await?[3], (102, 3, "pending".to_owned()));
    w.redis.start_again().await?;
    handle(w.event(4, &[sync(202, 10, 10, false)])?, &w.deps).await?;
    assert_eq!(w.corrections().await?[3], (102, 3, "refused".to_owned()));
    assert_eq!(w.counter(102).await?, Some(i64::MAX - 10));
    let corrected_at: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT corrected_at FROM budget_sync_accuracy WHERE \"offset\" = 3")
            .fetch_one(&w.db.pool)
            .await?;
    assert_eq!(corrected_at, None);
    Ok(())
}

#[tokio::test]
async fn a_campaign_resumed_and_paused_again_the_same_day_is_announced_again() -> anyhow::Result<()>
{
    let w = World::new().await?;
    handle(w.event(0, &[sync(103, 35_000, 35_000, true)])?, &w.deps).await?;
    assert_eq!(w.notifications().await?.len(), 1);
    // The operators resume it; a later message finds it over budget again.
    sqlx::query("UPDATE campaigns SET status = 'active' WHERE campaign_id = 103")
        .execute(&w.db.pool)
        .await?;
    let again = handle(w.event(1, &[sync(103, 36_000, 36_000, true)])?, &w.deps).await?;
    assert_eq!(again.applied, 1);
    assert_eq!(w.status(103).await?.as_deref(), Some("paused"));
    let notices = w.notifications().await?;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(w.db.count("SELECT count(*) FROM campaign_pauses").await?, 1);
    assert_eq!(w.db.count("SELECT count(*) FROM outbox").await?, 2);
    Ok(())
}
