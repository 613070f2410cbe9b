//! quality-score against the real stack: PostgreSQL, the Kafka broker (dead letters) and the
//! local SNS endpoint, whose notifications are read back from a subscribed SQS queue.

use std::time::Duration;

use integration_tests::{TestAws, TestDb, create_topics, load_kafka_event, read_topic, unique};
use quality_score::{CONSUMER, Deps, handle};
use serde_json::Value;

struct World {
    db: TestDb,
    aws: TestAws,
    topic: String,
    alerts_arn: String,
}

impl World {
    async fn new() -> anyhow::Result<Self> {
        let (db, mut aws) = (TestDb::new().await?, TestAws::new().await?);
        let topic = unique("t-quality-score-updates-");
        create_topics(&[&format!("{topic}-dlq")]).await?;
        let alerts_arn = aws.subscribed_topic("advertiser-alerts").await?;
        Ok(Self {
            db,
            aws,
            topic,
            alerts_arn,
        })
    }

    fn deps(&self, alerts_arn: &str) -> anyhow::Result<Deps> {
        Ok(Deps {
            db: self.db.pool.clone(),
            dead_letters: integration_tests::dead_letters(&self.db.pool, CONSUMER)?,
            outbox: adapters::outbox::Outbox::new(
                self.db.pool.clone(),
                adapters::aws::sns(&self.aws.sdk),
                CONSUMER,
                alerts_arn,
            ),
        })
    }

    async fn notifications(&self) -> anyhow::Result<Vec<Value>> {
        self.aws.drain("advertiser-alerts").await
    }
}

#[tokio::test]
async fn steps_history_and_sharp_drops_with_poison_and_a_replay() -> anyhow::Result<()> {
    let w = World::new().await?;
    let deps = w.deps(&w.alerts_arn)?;
    let event = load_kafka_event("quality-score.json", "quality-score-updates", &w.topic)?;

    let summary = handle(event.clone(), &deps).await?;
    // 2001: 8.4 (first) written, 8.6 (+0.2) not, 6.1 (-2.5) written; 2002: first, written.
    assert_eq!(
        (
            summary.records,
            summary.valid,
            summary.applied,
            summary.rejected
        ),
        (6, 4, 3, 2)
    );
    let scores: Vec<(i64, f64)> =
        sqlx::query_as("SELECT campaign_id, score FROM quality_scores ORDER BY campaign_id")
            .fetch_all(&w.db.pool)
            .await?;
    assert_eq!(scores, [(2001, 6.1), (2002, 5.0)]);
    assert_eq!(
        w.db.count("SELECT count(*) FROM quality_score_history")
            .await?,
        3
    );
    let notified = w.notifications().await?;
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(notified[0]["campaign_id"], 2001);
    assert_eq!(notified[0]["previous_score"], 8.4);
    let dead = read_topic(&format!("{}-dlq", w.topic), 2, Duration::from_secs(10)).await?;
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .any(|d| d.headers["dlq.error"].contains("outside 0.0..=10.0"))
    );

    let again = handle(event, &deps).await?;
    assert_eq!(again.applied, 0);
    assert_eq!(
        w.db.count("SELECT count(*) FROM quality_score_history")
            .await?,
        3
    );
    assert!(
        w.notifications().await?.is_empty(),
        "no second notification"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_notification_is_sent_once_by_the_retry() -> anyhow::Result<()> {
    let w = World::new().await?;
    let event = load_kafka_event("quality-score.json", "quality-score-updates", &w.topic)?;

    let broken = w.deps(&format!("{}-missing", w.alerts_arn))?;
    let err = handle(event.clone(), &broken)
        .await
        .expect_err("SNS topic missing");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        w.db.count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await?,
        1
    );

    let deps = w.deps(&w.alerts_arn)?;
    assert_eq!(
        handle(event.clone(), &deps).await?.applied,
        0,
        "scores were already written"
    );
    assert_eq!(w.notifications().await?.len(), 1);
    handle(event, &deps).await?;
    assert!(w.notifications().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_same_batch_delivered_twice_at_once_notifies_once() -> anyhow::Result<()> {
    let w = World::new().await?;
    let event = load_kafka_event("quality-score.json", "quality-score-updates", &w.topic)?;
    let (one, other) = (w.deps(&w.alerts_arn)?, w.deps(&w.alerts_arn)?);
    for _ in 0..3 {
        let (a, b) = tokio::join!(handle(event.clone(), &one), handle(event.clone(), &other));
        for result in [a, b] {
            if let Err(err) = result {
                assert!(err.is_retryable(), "{err}");
            }
        }
    }
    // Whatever the interleaving, one sharp drop is one notification.
    handle(event, &one).await?;
    assert_eq!(w.notifications().await?.len(), 1);
    Ok(())
}
