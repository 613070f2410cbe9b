//! quality-score against the real stack: PostgreSQL, the Kafka broker (dead letters) and the
//! local SNS endpoint, whose notifications are read back from a subscribed SQS queue.

use std::time::Duration;

use integration_tests::{
    TestAws, TestDb, create_topics, kafka_brokers, load_kafka_event, read_topic, unique,
};
use quality_score::{CONSUMER, Deps, handle};
use serde_json::Value;

struct World {
    db: TestDb,
    aws: TestAws,
    topic: String,
    alerts_arn: String,
    alerts_queue: String,
}

impl World {
    async fn new() -> anyhow::Result<Self> {
        let (db, aws) = (TestDb::new().await?, TestAws::new().await?);
        let topic = unique("t-quality-score-updates-");
        create_topics(&[&format!("{topic}-dlq")]).await?;
        let sns = adapters::aws::sns(&aws.sdk);
        let alerts_arn = sns
            .create_topic()
            .name(format!("{}-advertiser-alerts", aws.prefix))
            .send()
            .await?
            .topic_arn
            .unwrap_or_default();
        let alerts_queue = aws
            .sqs
            .create_queue()
            .queue_name(format!("{}-advertiser-alerts", aws.prefix))
            .send()
            .await?
            .queue_url
            .unwrap_or_default();
        let queue_arn = aws
            .sqs
            .get_queue_attributes()
            .queue_url(&alerts_queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .unwrap_or_default();
        sns.subscribe()
            .topic_arn(&alerts_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await?;
        Ok(Self {
            db,
            aws,
            topic,
            alerts_arn,
            alerts_queue,
        })
    }

    fn deps(&self, alerts_arn: &str) -> anyhow::Result<Deps> {
        Ok(Deps {
            db: self.db.pool.clone(),
            dead_letters: adapters::kafka::DeadLetters::new(
                &kafka_brokers(),
                self.db.pool.clone(),
                CONSUMER,
            )?,
            sns: adapters::aws::sns(&self.aws.sdk),
            advertiser_alerts_topic_arn: alerts_arn.to_owned(),
        })
    }

    async fn notifications(&self) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let received = self
            .aws
            .sqs
            .receive_message()
            .queue_url(&self.alerts_queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for message in received.messages.unwrap_or_default() {
            out.push(serde_json::from_str(message.body().unwrap_or("null"))?);
            if let Some(handle) = message.receipt_handle() {
                self.aws
                    .sqs
                    .delete_message()
                    .queue_url(&self.alerts_queue)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
        Ok(out)
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
        w.db.count(
            "SELECT count(*) FROM quality_score_history WHERE notified_at IS NULL AND sharp_drop"
        )
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
