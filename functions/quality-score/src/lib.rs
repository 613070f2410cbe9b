//! quality-score: score updates from `quality-score-updates` (consumer group
//! `quality-score-processor`, SPEC §2). A score is stored when it moves by 0.5 or more from the
//! stored one (a campaign's first score always), each write adds a history row, and a drop of
//! 2.0 or more notifies the advertiser through SNS.
//!
//! The batch is folded per campaign in produce order over the stored scores, read once under a
//! row lock; history rows and final scores are written set-based in one transaction. The
//! notifications go out after the commit, from the history rows still marked unnotified, so a
//! crash in between is caught up by the retry and nothing is notified twice.

use std::collections::HashMap;

use adapters::kafka::{self, DeadLetters, KafkaBatchSummary};
use adapters::{aws, config, db};
use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::quality::{ScoreChange, ScoreUpdate, Stored, decide, parse_score};
use sqlx::PgPool;

pub const CONSUMER: &str = "quality-score-processor";

#[derive(Debug, Clone)]
pub struct Config {
    pub database: config::DatabaseConfig,
    pub dead_letters: config::DeadLetterConfig,
    pub advertiser_alerts_topic_arn: String,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            database: config::DatabaseConfig::from_env()?,
            dead_letters: config::DeadLetterConfig::from_env()?,
            advertiser_alerts_topic_arn: config::required("ADVERTISER_ALERTS_TOPIC_ARN")?,
        })
    }
}

pub struct Deps {
    pub db: PgPool,
    pub dead_letters: DeadLetters,
    pub sns: aws_sdk_sns::Client,
    pub advertiser_alerts_topic_arn: String,
}

impl Deps {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let sdk = aws::sdk_config().await;
        let db = db::pool(&config.database, &sdk).await?;
        let dead_letters = DeadLetters::connect(&config.dead_letters, &sdk, db.clone(), CONSUMER)?;
        Ok(Self {
            db,
            dead_letters,
            sns: aws::sns(&sdk),
            advertiser_alerts_topic_arn: config.advertiser_alerts_topic_arn.clone(),
        })
    }
}

pub async fn handle(event: KafkaEvent, deps: &Deps) -> Result<KafkaBatchSummary, WorkerError> {
    kafka::process(
        &event,
        |record| parse_score(&record.value),
        |updates| async move {
            let campaigns = campaigns_in_order(&updates);
            let written = store(&deps.db, &campaigns, updates).await?;
            notify_sharp_drops(deps, &campaigns).await?;
            Ok(written)
        },
        &deps.dead_letters,
    )
    .await
}

fn campaigns_in_order(updates: &[ScoreUpdate]) -> Vec<i64> {
    let mut campaigns: Vec<i64> = updates.iter().map(|u| u.campaign_id).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    campaigns
}

/// Writes the batch's changes; returns how many scores were written.
async fn store(
    db: &PgPool,
    campaigns: &[i64],
    updates: Vec<ScoreUpdate>,
) -> Result<usize, WorkerError> {
    if updates.is_empty() {
        return Ok(0);
    }
    let mut tx = db.begin().await.map_err(db::classify)?;
    // Locked in campaign order, so two invocations sharing campaigns cannot deadlock.
    let stored: HashMap<i64, Stored> = sqlx::query_as::<_, (i64, f64, DateTime<Utc>)>(
        "SELECT campaign_id, score, computed_at FROM quality_scores
          WHERE campaign_id = ANY($1) ORDER BY campaign_id FOR UPDATE",
    )
    .bind(campaigns)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::classify)?
    .into_iter()
    .map(|(id, score, computed_at)| (id, Stored { score, computed_at }))
    .collect();

    let mut by_campaign: HashMap<i64, Vec<ScoreUpdate>> = HashMap::new();
    for update in updates {
        by_campaign
            .entry(update.campaign_id)
            .or_default()
            .push(update);
    }
    let changes: Vec<ScoreChange> = campaigns
        .iter()
        .flat_map(|id| {
            decide(
                stored.get(id).copied(),
                by_campaign.get(id).into_iter().flatten(),
            )
        })
        .collect();
    if changes.is_empty() {
        tx.commit().await.map_err(db::classify)?;
        return Ok(0);
    }

    let ids: Vec<i64> = changes.iter().map(|c| c.campaign_id).collect();
    let advertisers: Vec<i64> = changes.iter().map(|c| c.advertiser_id).collect();
    let previous: Vec<Option<f64>> = changes.iter().map(|c| c.previous).collect();
    let scores: Vec<f64> = changes.iter().map(|c| c.score).collect();
    let computed: Vec<DateTime<Utc>> = changes.iter().map(|c| c.computed_at).collect();
    let sharp: Vec<bool> = changes.iter().map(|c| c.sharp_drop).collect();
    sqlx::query(
        "WITH changes AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::float8[],
                                  $5::timestamptz[], $6::bool[])
                 WITH ORDINALITY AS c(campaign_id, advertiser_id, previous_score, score,
                                      computed_at, sharp_drop, n)),
         history AS (
             INSERT INTO quality_score_history (campaign_id, advertiser_id, previous_score,
                                                score, computed_at, sharp_drop)
             SELECT campaign_id, advertiser_id, previous_score, score, computed_at, sharp_drop
               FROM changes ORDER BY n
             ON CONFLICT (campaign_id, computed_at) DO NOTHING)
         INSERT INTO quality_scores (campaign_id, advertiser_id, score, computed_at)
         SELECT DISTINCT ON (campaign_id) campaign_id, advertiser_id, score, computed_at
           FROM changes ORDER BY campaign_id, n DESC
         ON CONFLICT (campaign_id) DO UPDATE SET
             advertiser_id = EXCLUDED.advertiser_id, score = EXCLUDED.score,
             computed_at = EXCLUDED.computed_at, updated_at = now()",
    )
    .bind(&ids)
    .bind(&advertisers)
    .bind(&previous)
    .bind(&scores)
    .bind(&computed)
    .bind(&sharp)
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    tx.commit().await.map_err(db::classify)?;
    Ok(changes.len())
}

/// A history row still to be notified: id, campaign, advertiser, previous, score, computed_at.
type PendingDrop = (i64, i64, i64, Option<f64>, f64, DateTime<Utc>);

/// Publishes every sharp drop of these campaigns not yet notified, then marks it. The rows are
/// claimed first (`FOR UPDATE SKIP LOCKED`): a concurrent invocation with the same batch skips
/// what this one is sending instead of sending it again. If a publish fails, the drops sent so
/// far stay marked and the rest wait for the retry.
async fn notify_sharp_drops(deps: &Deps, campaigns: &[i64]) -> Result<(), WorkerError> {
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let pending: Vec<PendingDrop> = sqlx::query_as(
        "SELECT id, campaign_id, advertiser_id, previous_score, score, computed_at
           FROM quality_score_history
          WHERE campaign_id = ANY($1) AND sharp_drop AND notified_at IS NULL
          ORDER BY id
            FOR UPDATE SKIP LOCKED",
    )
    .bind(campaigns)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::classify)?;
    for drop in pending {
        let id = drop.0;
        if let Err(err) = publish_drop(deps, drop).await {
            tx.commit().await.map_err(db::classify)?;
            return Err(err);
        }
        sqlx::query("UPDATE quality_score_history SET notified_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db::classify)?;
    }
    tx.commit().await.map_err(db::classify)?;
    Ok(())
}

async fn publish_drop(deps: &Deps, drop: PendingDrop) -> Result<(), WorkerError> {
    let (_, campaign_id, advertiser_id, previous, score, computed_at) = drop;
    let message = serde_json::json!({
        "type": "quality_score_drop",
        "campaign_id": campaign_id,
        "advertiser_id": advertiser_id,
        "previous_score": previous,
        "score": score,
        "computed_at": computed_at,
    });
    let attribute = aws_sdk_sns::types::MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(advertiser_id.to_string())
        .build()
        .map_err(WorkerError::retryable)?;
    deps.sns
        .publish()
        .topic_arn(&deps.advertiser_alerts_topic_arn)
        .subject("Quality score dropped")
        .message(message.to_string())
        .message_attributes("advertiser_id", attribute)
        .send()
        .await
        .map_err(|err| WorkerError::retryable(anyhow::Error::new(err).context("SNS publish")))?;
    tracing::info!(
        campaign_id,
        advertiser_id,
        score,
        "advertiser notified of a sharp drop"
    );
    Ok(())
}
