//! The PostgreSQL side: which messages are new, and one statement that records them, supersedes
//! older queued corrections, and pauses campaigns, with the pauses' notifications in the
//! outbox in the same transaction.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use domain::WorkerError;
use domain::budget::Correction;
use domain::calendar::kst_date;
use domain::notice::{self, Notice, Pause};
use sqlx::PgPool;
use sqlx::types::Json;

use crate::{Deps, Synced};
use adapters::db;

/// The messages of the batch not recorded yet: a redelivered one was fully handled (or queued)
/// by its first delivery and must not touch Redis again.
pub(crate) async fn not_yet_recorded(
    db: &PgPool,
    syncs: &[Synced],
) -> Result<Vec<Synced>, WorkerError> {
    if syncs.is_empty() {
        return Ok(Vec::new());
    }
    let topics: Vec<&str> = syncs.iter().map(|s| s.topic.as_str()).collect();
    let partitions: Vec<i32> = syncs.iter().map(|s| s.partition).collect();
    let offsets: Vec<i64> = syncs.iter().map(|s| s.offset).collect();
    let recorded: HashSet<(String, i32, i64)> = sqlx::query_file!(
        "sql/recorded.sql",
        &topics as &[&str],
        &partitions,
        &offsets,
    )
    .fetch_all(db)
    .await
    .map_err(db::classify)?
    .into_iter()
    .map(|r| (r.topic, r.partition, r.offset))
    .collect();
    Ok(syncs
        .iter()
        .filter(|s| !recorded.contains(&(s.topic.clone(), s.partition, s.offset)))
        .cloned()
        .collect())
}

/// What the record step wrote.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) rows: usize,
    pub(crate) paused: usize,
}

pub(crate) async fn record(
    deps: &Deps,
    fresh: &[Synced],
    plan: &[Correction],
) -> Result<Written, WorkerError> {
    if fresh.is_empty() {
        return Ok(Written::default());
    }
    let topics: Vec<&str> = fresh.iter().map(|s| s.topic.as_str()).collect();
    let partitions: Vec<i32> = fresh.iter().map(|s| s.partition).collect();
    let offsets: Vec<i64> = fresh.iter().map(|s| s.offset).collect();
    let produced: Vec<DateTime<Utc>> = fresh.iter().map(|s| s.produced_at).collect();
    let campaigns: Vec<i64> = fresh.iter().map(|s| s.sync.campaign_id).collect();
    let days: Vec<NaiveDate> = fresh.iter().map(|s| s.sync.spend_date).collect();
    let redis_spent: Vec<i64> = fresh.iter().map(|s| s.sync.redis_spent).collect();
    let db_spent: Vec<i64> = fresh.iter().map(|s| s.sync.db_spent).collect();
    let reported: Vec<Option<f64>> = fresh.iter().map(|s| s.sync.reported_ratio).collect();
    let accuracy: Vec<f64> = fresh.iter().map(|s| s.sync.accuracy()).collect();
    let difference: Vec<f64> = fresh.iter().map(|s| s.sync.difference_ratio()).collect();
    let deltas: Vec<Option<i64>> = fresh.iter().map(|s| s.sync.correction()).collect();
    let states: Vec<&str> = plan.iter().map(|c| c.as_str()).collect();
    // Today in Seoul by the function's clock, the one the tests and the rules use.
    let today = kst_date(Utc::now());
    let pause: Vec<bool> = fresh.iter().map(|s| s.sync.may_pause(today)).collect();

    // One statement (`sql/record.sql`): the rows, the superseded corrections and the pauses.
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let recorded = sqlx::query_file!(
        "sql/record.sql",
        &topics as &[&str],
        &partitions,
        &offsets,
        &produced,
        &campaigns,
        &days,
        &redis_spent,
        &db_spent,
        &reported as &[Option<f64>],
        &accuracy,
        &difference,
        &deltas as &[Option<i64>],
        &states as &[&str],
        &pause,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db::classify)?;
    // Announced in the pause's own transaction: a pause and its notification commit together.
    // (`notified_at` is set as the pause is written: the outbox announces it, and a function
    // of the previous release must not announce it again.)
    let paused = recorded.paused.0;
    let notices: Vec<Notice> = paused.iter().map(notice::campaign_paused).collect();
    deps.outbox.add(&mut tx, &notices).await?;
    tx.commit().await.map_err(db::classify)?;
    Ok(Written {
        rows: usize::try_from(recorded.rows).unwrap_or_default(),
        paused: paused.len(),
    })
}
