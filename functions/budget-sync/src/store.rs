//! The PostgreSQL side: which messages are new, and one statement that records them, supersedes
//! older queued corrections, and pauses campaigns, with the pauses' notifications in the
//! outbox in the same transaction.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use domain::WorkerError;
use domain::budget::{CampaignAction, Correction};
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
    let recorded: HashSet<(String, i32, i64)> = sqlx::query_as(
        "SELECT a.topic, a.partition, a.\"offset\"
           FROM budget_sync_accuracy a
           JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS b(topic, partition, off)
             ON a.topic = b.topic AND a.partition = b.partition AND a.\"offset\" = b.off",
    )
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(db)
    .await
    .map_err(db::classify)?
    .into_iter()
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
    let pause: Vec<bool> = fresh
        .iter()
        .map(|s| s.sync.campaign_action == CampaignAction::PauseIfExceeded)
        .collect();

    // One statement: the rows; older queued corrections of the same counters superseded (this
    // batch's messages read the counters later); and the pauses. Only messages recorded now
    // can pause, so a replay cannot pause a campaign operators resumed since. A pause is for
    // today's (KST) spend: a late message about an earlier day pauses nothing.
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let (rows, paused): (i64, Json<Vec<Pause>>) = sqlx::query_as(
        "WITH batch AS (
             SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::timestamptz[],
                                  $5::bigint[], $6::date[], $7::bigint[], $8::bigint[],
                                  $9::float8[], $10::float8[], $11::float8[], $12::bigint[],
                                  $13::text[], $14::bool[])
                 AS b(topic, partition, off, produced_at, campaign_id, spend_date, redis_spent,
                      db_spent, reported_ratio, accuracy, difference_ratio, correction_delta,
                      correction, pause)),
         inserted AS (
             INSERT INTO budget_sync_accuracy
                 (topic, partition, \"offset\", produced_at, campaign_id, spend_date,
                  redis_spent, db_spent, reported_ratio, accuracy, difference_ratio,
                  correction_delta, correction, corrected_at)
             SELECT topic, partition, off, produced_at, campaign_id, spend_date, redis_spent,
                    db_spent, reported_ratio, accuracy, difference_ratio, correction_delta,
                    correction, CASE WHEN correction = 'applied' THEN now() END
               FROM batch
             ON CONFLICT (topic, partition, \"offset\") DO NOTHING
             RETURNING topic, partition, \"offset\"),
         superseded AS (
             UPDATE budget_sync_accuracy a SET correction = 'superseded'
               FROM (SELECT campaign_id, spend_date, max(produced_at) AS newest
                       FROM batch GROUP BY campaign_id, spend_date) b
              WHERE a.correction = 'pending' AND a.campaign_id = b.campaign_id
                AND a.spend_date = b.spend_date AND a.produced_at <= b.newest),
         reached AS (
             SELECT DISTINCT ON (b.campaign_id) b.campaign_id, b.spend_date, b.db_spent
               FROM batch b
               JOIN inserted i
                 ON i.topic = b.topic AND i.partition = b.partition AND i.\"offset\" = b.off
              WHERE b.pause AND b.spend_date = $15
              ORDER BY b.campaign_id, b.db_spent DESC),
         paused AS (
             UPDATE campaigns c
                SET status = 'paused', status_reason = 'daily budget reached',
                    status_changed_at = now()
               FROM reached r
              WHERE c.campaign_id = r.campaign_id AND c.status = 'active'
                AND c.daily_budget IS NOT NULL AND r.db_spent >= c.daily_budget
             RETURNING c.campaign_id, c.advertiser_id, c.daily_budget, r.spend_date, r.db_spent),
         pauses AS (
             INSERT INTO campaign_pauses
                 (campaign_id, advertiser_id, spend_date, db_spent, daily_budget, notified_at)
             SELECT campaign_id, advertiser_id, spend_date, db_spent, daily_budget, now()
               FROM paused
             ON CONFLICT (campaign_id, spend_date) DO UPDATE SET
                 advertiser_id = EXCLUDED.advertiser_id, db_spent = EXCLUDED.db_spent,
                 daily_budget = EXCLUDED.daily_budget, paused_at = now(),
                 redis_status_at = NULL, notified_at = now()
             RETURNING campaign_id, advertiser_id, spend_date, db_spent, daily_budget, paused_at)
         SELECT (SELECT count(*) FROM inserted),
                (SELECT coalesce(json_agg(p ORDER BY campaign_id), '[]') FROM pauses p)",
    )
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&produced)
    .bind(&campaigns)
    .bind(&days)
    .bind(&redis_spent)
    .bind(&db_spent)
    .bind(&reported)
    .bind(&accuracy)
    .bind(&difference)
    .bind(&deltas)
    .bind(&states)
    .bind(&pause)
    // Today in Seoul by the function's clock, the one the tests and the rules use.
    .bind(kst_date(Utc::now()))
    .fetch_one(&mut *tx)
    .await
    .map_err(db::classify)?;
    // Announced in the pause's own transaction: a pause and its notification commit together.
    // (`notified_at` is set as the pause is written: the outbox announces it, and a function
    // of the previous release must not announce it again.)
    let notices: Vec<Notice> = paused.0.iter().map(notice::campaign_paused).collect();
    deps.outbox.add(&mut tx, &notices).await?;
    tx.commit().await.map_err(db::classify)?;
    Ok(Written {
        rows: usize::try_from(rows).unwrap_or_default(),
        paused: paused.0.len(),
    })
}
