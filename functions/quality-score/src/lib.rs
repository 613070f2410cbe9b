//! quality-score: score updates from `quality-score-updates` (consumer group
//! `quality-score-processor`, SPEC §2). A score is stored when it moves by 0.5 or more from the
//! stored one (a campaign's first score always), each write adds a history row, and a drop of
//! 2.0 or more notifies the advertiser through SNS.
//!
//! The batch is folded per campaign in produce order over the stored scores, read once under a
//! row lock; history rows, final scores and the sharp drops' notifications (in the outbox) are
//! written set-based in one transaction. The outbox publishes them after the commit, so a crash
//! in between is caught up by the retry: at least once, keyed for de-duplication.

use std::collections::HashMap;

use adapters::bootstrap::KafkaConsumer;
use adapters::kafka::{self, DeadLetters, KafkaBatchSummary, OnFailure};
use adapters::outbox::Outbox;
use adapters::{config, db};
use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::notice::{self, Notice};
use domain::quality::{ScoreChange, ScoreUpdate, Stored, decide, parse_score};
use serde::Deserialize;
use sqlx::PgPool;

pub const CONSUMER: &str = "quality-score-processor";
/// Notifications published per batch; a backlog drains over the following batches.
const NOTIFY_LIMIT: i64 = 500;

/// quality-score's own settings.
#[derive(Deserialize)]
struct Settings {
    advertiser_alerts_topic_arn: String,
}

pub struct Deps {
    pub db: PgPool,
    pub dead_letters: DeadLetters,
    /// Sharp-drop notifications to the advertisers' topic.
    pub outbox: Outbox,
}

impl Deps {
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let base = KafkaConsumer::from_env(CONSUMER).await?;
        Ok(Self {
            outbox: base.outbox(&settings.advertiser_alerts_topic_arn),
            db: base.db,
            dead_letters: base.dead_letters,
        })
    }
}

pub async fn handle(event: KafkaEvent, deps: &Deps) -> Result<KafkaBatchSummary, WorkerError> {
    kafka::process(
        &event,
        |record| parse_score(&record.value, record.received_at()),
        |updates| async move {
            let campaigns = campaigns_in_order(&updates);
            let written = store(deps, &campaigns, &updates).await?;
            deps.outbox.flush(NOTIFY_LIMIT).await?;
            Ok(written)
        },
        &deps.dead_letters,
        &OnFailure::FailInvocation,
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
    deps: &Deps,
    campaigns: &[i64],
    updates: &[ScoreUpdate],
) -> Result<usize, WorkerError> {
    if updates.is_empty() {
        return Ok(0);
    }
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let stored: HashMap<i64, Stored> = sqlx::query_file!("sql/stored.sql", campaigns)
        .fetch_all(&mut *tx)
        .await
        .map_err(db::classify)?
        .into_iter()
        .map(|row| {
            let stored = Stored {
                score: row.score,
                computed_at: row.computed_at,
            };
            (row.campaign_id, stored)
        })
        .collect();

    let mut by_campaign: HashMap<i64, Vec<&ScoreUpdate>> = HashMap::new();
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
                by_campaign.get(id).into_iter().flatten().copied(),
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
    sqlx::query_file!(
        "sql/write.sql",
        &ids,
        &advertisers,
        &previous as &[Option<f64>],
        &scores,
        &computed,
        &sharp,
    )
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    let drops: Vec<Notice> = changes
        .iter()
        .filter(|c| c.sharp_drop)
        .map(notice::quality_score_drop)
        .collect();
    deps.outbox.add(&mut tx, &drops).await?;
    tx.commit().await.map_err(db::classify)?;
    Ok(changes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(campaign_id: i64) -> ScoreUpdate {
        ScoreUpdate {
            campaign_id,
            advertiser_id: 1,
            score: 5.0,
            computed_at: DateTime::from_timestamp(1_795_187_400, 0).expect("valid time"),
        }
    }

    #[test]
    fn campaigns_are_locked_in_one_order_each_once() {
        let updates = [update(30), update(10), update(30), update(20)];
        assert_eq!(campaigns_in_order(&updates), [10, 20, 30]);
    }
}
