//! What each kind of function builds once per cold start, from its environment. A function's
//! `Deps::from_env` starts from the base of its kind and adds only what is its own, so a new
//! Kafka consumer, scheduled job or API function is its rules plus a few lines of wiring.

use aws_config::SdkConfig;
use serde::Deserialize;
use sqlx::PgPool;

use crate::config::{self, DatabaseConfig, DeadLetterConfig, KafkaConfig};
use crate::jobs::Reporter;
use crate::kafka::{DeadLetters, Producer};
use crate::outbox::Outbox;
use crate::{aws, db};

/// A Kafka consumer's base: the SDK configuration, the database pool (`DATABASE_*`) and the
/// dead-letter producer (`KAFKA_*`, `DEAD_LETTER_BUCKET`).
pub struct KafkaConsumer {
    pub sdk: SdkConfig,
    pub db: PgPool,
    pub dead_letters: DeadLetters,
    consumer: String,
    kafka: KafkaConfig,
}

impl KafkaConsumer {
    /// `consumer` is the consumer group, which owns the function's dead letters and
    /// notifications.
    pub async fn from_env(consumer: &str) -> anyhow::Result<Self> {
        let database = DatabaseConfig::from_env()?;
        let dead_letter_config: DeadLetterConfig = config::from_env()?;
        let sdk = aws::sdk_config().await;
        let db = db::pool(&database, &sdk).await?;
        let dead_letters = DeadLetters::connect(&dead_letter_config, &sdk, db.clone(), consumer)?;
        Ok(Self {
            sdk,
            db,
            dead_letters,
            consumer: consumer.to_owned(),
            kafka: dead_letter_config.kafka,
        })
    }

    /// An idempotent producer to the same brokers, for a consumer that publishes.
    pub fn producer(&self) -> anyhow::Result<Producer> {
        Producer::connect(&self.kafka, &self.sdk)
    }

    /// The consumer's outbox to the SNS topic `topic_arn`.
    pub fn outbox(&self, topic_arn: &str) -> Outbox {
        Outbox::new(
            self.db.clone(),
            aws::sns(&self.sdk),
            &self.consumer,
            topic_arn,
        )
    }
}

/// An SQS consumer's base: the SDK configuration, the database pool (`DATABASE_*`) and an SQS
/// client.
pub struct SqsConsumer {
    pub sdk: SdkConfig,
    pub db: PgPool,
    pub sqs: aws_sdk_sqs::Client,
}

impl SqsConsumer {
    pub async fn from_env() -> anyhow::Result<Self> {
        let database = DatabaseConfig::from_env()?;
        let sdk = aws::sdk_config().await;
        let db = db::pool(&database, &sdk).await?;
        Ok(Self {
            sqs: aws::sqs(&sdk),
            sdk,
            db,
        })
    }
}

/// An API function's base (invoked by API Gateway): the SDK configuration and the database pool
/// (`DATABASE_*`).
pub struct ApiFunction {
    pub sdk: SdkConfig,
    pub db: PgPool,
}

impl ApiFunction {
    pub async fn from_env() -> anyhow::Result<Self> {
        let database = DatabaseConfig::from_env()?;
        let sdk = aws::sdk_config().await;
        let db = db::pool(&database, &sdk).await?;
        Ok(Self { sdk, db })
    }
}

/// A scheduled job's base: the SDK configuration and the run reporter (its database,
/// `DATABASE_*`, and the operators' topic, `OPERATOR_ALERTS_TOPIC_ARN`).
pub struct ScheduledJob {
    pub sdk: SdkConfig,
    pub reporter: Reporter,
}

#[derive(Deserialize)]
struct JobEnv {
    operator_alerts_topic_arn: String,
}

impl ScheduledJob {
    pub async fn from_env() -> anyhow::Result<Self> {
        let database = DatabaseConfig::from_env()?;
        let env: JobEnv = config::from_env()?;
        let sdk = aws::sdk_config().await;
        let reporter = Reporter::build(&database, &env.operator_alerts_topic_arn, &sdk).await?;
        Ok(Self { sdk, reporter })
    }
}

/// The dependencies of a job whose work is all in its database: the run reporter alone.
pub struct DatabaseJob {
    pub reporter: Reporter,
}

impl DatabaseJob {
    pub async fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            reporter: ScheduledJob::from_env().await?.reporter,
        })
    }
}
