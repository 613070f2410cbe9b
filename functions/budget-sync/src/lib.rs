//! budget-sync: Flink's budget sync results from `budget-management` (consumer group
//! `budget-sync-processor`, SPEC §2). The DB is the source of truth for spend.
//!
//! A batch goes through these steps:
//! 1. **Corrections** (one Redis pipeline): messages already recorded (a redelivery) are left
//!    out. For each counter, the newest message's correction, if it asks for one and the
//!    difference reaches 5 %, is applied by a Lua script that adds the delta and sets a
//!    per-message marker atomically: increments made meanwhile survive, and a correction is
//!    never applied twice. If Redis is unreachable, the corrections are queued instead.
//! 2. **Record** (one statement): an accuracy row per message, keyed by its topic position,
//!    with its correction's state (`applied`, `pending` when queued, `superseded`, `none`).
//!    Older queued corrections of the same counters are superseded. A `pause_if_exceeded`
//!    message pauses its campaign when today's DB spend reached the daily budget, and queues
//!    the pause's Redis status key, and its operators' notification in the outbox, in the same
//!    transaction.
//! 3. **Queued work** (one Redis pipeline): whatever earlier batches queued is applied; if
//!    Redis is still away it stays queued. The batch succeeds either way: the DB side is done.
//! 4. **Notify**: the outbox publishes each new pause to the operators' SNS topic (at least
//!    once, keyed for de-duplication; see `adapters::outbox`).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use adapters::bootstrap::KafkaConsumer;
use adapters::emf::{Metrics, Unit};
use adapters::kafka::{self, DeadLetters, KafkaBatchSummary, OnFailure, Record};
use adapters::outbox::Outbox;
use adapters::{config, db, telemetry};
use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, NaiveDate, Utc};
use domain::WorkerError;
use domain::budget::{
    BudgetSync, CampaignAction, MARKER_TTL_SECONDS, Source, counter_key, marker_key, parse_sync,
    status_key,
};
use domain::notice::{self, Notice, Pause};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use sqlx::types::Json;

pub const CONSUMER: &str = "budget-sync-processor";

/// Queued Redis work taken per batch; a backlog drains over the following batches.
const FLUSH_LIMIT: i64 = 20_000;
/// Pauses notified per batch.
const NOTIFY_LIMIT: i64 = 200;

/// Adds ARGV[1] to the counter KEYS[1] unless the marker KEYS[2] exists, then sets the marker
/// for ARGV[2] seconds. A counter never goes below zero. Returns 1 if applied, 0 if the marker
/// was already there, -1 if Redis refused the increment (the sum overflows, or the counter is
/// not an integer): then nothing was changed and no marker set. A script runs alone, so the
/// check and the set cannot interleave with another correction.
const CORRECT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local counter = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(counter) == 'table' then
  return -1
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
if counter < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
end
return 1
";

static CORRECT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CORRECT_SCRIPT));

pub struct Deps {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub dead_letters: DeadLetters,
    /// Pause notifications to the operators' topic.
    pub outbox: Outbox,
    /// The most a batch waits on Redis before leaving its work queued (`REDIS_BUDGET_MS`).
    pub redis_budget: Duration,
}

impl Deps {
    pub async fn from_env() -> anyhow::Result<Self> {
        let redis = config::RedisConfig::from_env()?;
        let redis_budget = Duration::from_millis(config::parsed_or("REDIS_BUDGET_MS", 10_000)?);
        let base = KafkaConsumer::from_env(CONSUMER).await?;
        Ok(Self {
            outbox: base.outbox("OPERATOR_ALERTS_TOPIC_ARN")?,
            redis: adapters::redis::connect_lazy(&redis)?,
            db: base.db,
            dead_letters: base.dead_letters,
            redis_budget,
        })
    }
}

/// A valid message and where it came from.
#[derive(Debug, Clone)]
pub struct Synced {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub produced_at: DateTime<Utc>,
    pub sync: BudgetSync,
}

fn validate(record: &Record) -> Result<Synced, WorkerError> {
    let produced_at = DateTime::from_timestamp_millis(record.timestamp_ms)
        .ok_or_else(|| WorkerError::permanent("record timestamp is out of range"))?;
    Ok(Synced {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        produced_at,
        sync: parse_sync(&record.value, produced_at)?,
    })
}

pub async fn handle(event: KafkaEvent, deps: &Deps) -> Result<KafkaBatchSummary, WorkerError> {
    kafka::process(
        &event,
        validate,
        |syncs| async move {
            let fresh = not_yet_recorded(&deps.db, &syncs).await?;
            let mut plan = plan(&fresh);
            let due: Vec<Due<'_>> = fresh
                .iter()
                .zip(&plan)
                .filter(|(_, state)| **state == Correction::Pending)
                .filter_map(|(s, _)| Due::of(s))
                .collect();
            let corrected_now = match apply_in_redis(deps, &due, &[]).await {
                Ok(outcomes) => {
                    let states = plan
                        .iter_mut()
                        .filter(|state| **state == Correction::Pending);
                    for (state, outcome) in states.zip(&outcomes) {
                        *state = outcome.state();
                    }
                    refused(&due, &outcomes);
                    outcomes
                }
                Err(err) => {
                    tracing::warn!(
                        error = %err,
                        queued = due.len(),
                        "Redis unreachable: corrections stay queued for a later batch"
                    );
                    Vec::new()
                }
            };
            let recorded = record(deps, &fresh, &plan).await?;
            let flushed = flush_queued(deps).await?;
            let notified = deps.outbox.flush(NOTIFY_LIMIT).await?.published;
            report(&fresh, &recorded, &corrected_now, &flushed, notified);
            Ok(recorded.rows)
        },
        &deps.dead_letters,
        &OnFailure::FailInvocation,
    )
    .await
}

/// The messages of the batch not recorded yet: a redelivered one was fully handled (or queued)
/// by its first delivery and must not touch Redis again.
async fn not_yet_recorded(db: &PgPool, syncs: &[Synced]) -> Result<Vec<Synced>, WorkerError> {
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

/// The Redis side of a message, as recorded in `budget_sync_accuracy.correction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Correction {
    /// Not asked for, or under the threshold.
    None,
    /// Due now: applied at once if Redis takes it, else recorded `pending` (queued) until a
    /// later batch applies it.
    Pending,
    Applied,
    /// A newer message about the same counter came: applying this one too would correct twice.
    Superseded,
    /// Redis refused the increment: the counter would overflow, or is not an integer.
    Refused,
}

impl Correction {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Applied => "applied",
            Self::Superseded => "superseded",
            Self::Refused => "refused",
        }
    }
}

/// Which corrections of the batch are due: per counter, only the newest message's.
fn plan(fresh: &[Synced]) -> Vec<Correction> {
    let mut newest: HashMap<(i64, NaiveDate), (DateTime<Utc>, i64)> = HashMap::new();
    for s in fresh {
        let at = (s.produced_at, s.offset);
        newest
            .entry((s.sync.campaign_id, s.sync.spend_date))
            .and_modify(|n| *n = (*n).max(at))
            .or_insert(at);
    }
    fresh
        .iter()
        .map(|s| match s.sync.correction() {
            None => Correction::None,
            Some(_)
                if newest[&(s.sync.campaign_id, s.sync.spend_date)]
                    == (s.produced_at, s.offset) =>
            {
                Correction::Pending
            }
            Some(_) => Correction::Superseded,
        })
        .collect()
}

/// One correction to apply: the counter, the delta and the message it came from.
#[derive(Debug, Clone, Copy)]
struct Due<'a> {
    campaign_id: i64,
    spend_date: NaiveDate,
    delta: i64,
    source: Source<'a>,
}

impl<'a> Due<'a> {
    fn of(s: &'a Synced) -> Option<Self> {
        Some(Self {
            campaign_id: s.sync.campaign_id,
            spend_date: s.sync.spend_date,
            delta: s.sync.correction()?,
            source: Source {
                topic: &s.topic,
                partition: s.partition,
                offset: s.offset,
                timestamp_ms: s.produced_at.timestamp_millis(),
            },
        })
    }
}

/// What the correction script did with one correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptAnswer {
    Applied,
    /// An earlier attempt applied it (its marker was there).
    AlreadyApplied,
    Refused,
}

impl ScriptAnswer {
    fn of(answer: i64) -> Self {
        match answer {
            1 => Self::Applied,
            0 => Self::AlreadyApplied,
            _ => Self::Refused,
        }
    }

    fn state(self) -> Correction {
        match self {
            Self::Applied | Self::AlreadyApplied => Correction::Applied,
            Self::Refused => Correction::Refused,
        }
    }
}

/// Logs each refused correction: a counter no correction can fix without an operator.
fn refused(due: &[Due<'_>], outcomes: &[ScriptAnswer]) {
    for (due, _) in due
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| **o == ScriptAnswer::Refused)
    {
        tracing::error!(
            campaign_id = due.campaign_id,
            spend_date = %due.spend_date,
            delta = due.delta,
            counter = %counter_key(due.campaign_id, due.spend_date),
            "Redis refused a correction: the counter would overflow or is not an integer"
        );
    }
}

/// Applies corrections and sets paused campaigns' status keys in one pipeline, within the
/// batch's Redis budget. Returns what became of each correction, in order.
async fn apply_in_redis(
    deps: &Deps,
    corrections: &[Due<'_>],
    paused: &[i64],
) -> anyhow::Result<Vec<ScriptAnswer>> {
    if corrections.is_empty() && paused.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    // Loaded in the same pipeline, ahead of its calls, so a restarted Redis is never missing it.
    pipe.cmd("SCRIPT").arg("LOAD").arg(CORRECT_SCRIPT).ignore();
    for due in corrections {
        pipe.cmd("EVALSHA")
            .arg(CORRECT.get_hash())
            .arg(2)
            .arg(counter_key(due.campaign_id, due.spend_date))
            .arg(marker_key(due.campaign_id, due.source))
            .arg(due.delta)
            .arg(MARKER_TTL_SECONDS);
    }
    for campaign in paused {
        pipe.cmd("SET")
            .arg(status_key(*campaign))
            .arg("paused")
            .ignore();
    }
    let mut redis = deps.redis.clone();
    let applied: Vec<i64> = tokio::time::timeout(deps.redis_budget, pipe.query_async(&mut redis))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {:?}", deps.redis_budget))??;
    if applied.len() != corrections.len() {
        anyhow::bail!(
            "{} answers to {} corrections",
            applied.len(),
            corrections.len()
        );
    }
    Ok(applied.into_iter().map(ScriptAnswer::of).collect())
}

/// What the record step wrote.
#[derive(Debug, Default)]
struct Written {
    rows: usize,
    paused: usize,
}

async fn record(
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
              WHERE b.pause AND b.spend_date = (now() AT TIME ZONE 'Asia/Seoul')::date
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
                 (campaign_id, advertiser_id, spend_date, db_spent, daily_budget)
             SELECT campaign_id, advertiser_id, spend_date, db_spent, daily_budget FROM paused
             ON CONFLICT (campaign_id, spend_date) DO UPDATE SET
                 advertiser_id = EXCLUDED.advertiser_id, db_spent = EXCLUDED.db_spent,
                 daily_budget = EXCLUDED.daily_budget, paused_at = now(),
                 redis_status_at = NULL
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
    .fetch_one(&mut *tx)
    .await
    .map_err(db::classify)?;
    // Announced in the pause's own transaction: a pause and its notification commit together.
    let notices: Vec<Notice> = paused.0.iter().map(notice::campaign_paused).collect();
    deps.outbox.add(&mut tx, &notices).await?;
    tx.commit().await.map_err(db::classify)?;
    Ok(Written {
        rows: usize::try_from(rows).unwrap_or_default(),
        paused: paused.0.len(),
    })
}

/// What the queued Redis work came to.
#[derive(Debug, Default)]
struct Flushed {
    corrected: usize,
    refused: usize,
    statuses: usize,
    /// Work left queued because Redis could not be reached.
    queued: usize,
}

/// A queued correction: row id, topic, partition, offset, produced at, campaign, day, delta.
type QueuedCorrection = (i64, String, i32, i64, DateTime<Utc>, i64, NaiveDate, i64);

/// Applies what earlier batches queued (corrections while Redis was down, new pauses' status
/// keys). The rows stay locked (SKIP LOCKED for a concurrent invocation) until they are
/// marked, and stay queued if Redis fails.
async fn flush_queued(deps: &Deps) -> Result<Flushed, WorkerError> {
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let corrections: Vec<QueuedCorrection> = sqlx::query_as(
        "SELECT id, topic, partition, \"offset\", produced_at, campaign_id, spend_date,
                correction_delta
           FROM budget_sync_accuracy
          WHERE correction = 'pending'
          ORDER BY id LIMIT $1
            FOR UPDATE SKIP LOCKED",
    )
    .bind(FLUSH_LIMIT)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::classify)?;
    let statuses: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, campaign_id FROM campaign_pauses
          WHERE redis_status_at IS NULL
          ORDER BY id LIMIT $1
            FOR UPDATE SKIP LOCKED",
    )
    .bind(FLUSH_LIMIT)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::classify)?;
    if corrections.is_empty() && statuses.is_empty() {
        tx.commit().await.map_err(db::classify)?;
        return Ok(Flushed::default());
    }

    let due: Vec<Due<'_>> = corrections
        .iter()
        .map(
            |(_, topic, partition, offset, produced_at, campaign_id, spend_date, delta)| Due {
                campaign_id: *campaign_id,
                spend_date: *spend_date,
                delta: *delta,
                source: Source {
                    topic,
                    partition: *partition,
                    offset: *offset,
                    timestamp_ms: produced_at.timestamp_millis(),
                },
            },
        )
        .collect();
    let paused: Vec<i64> = statuses.iter().map(|s| s.1).collect();
    let outcomes = match apply_in_redis(deps, &due, &paused).await {
        Ok(outcomes) => outcomes,
        Err(err) => {
            let queued = corrections.len() + statuses.len();
            tracing::warn!(
                error = %err,
                queued,
                "Redis unreachable: queued corrections and status keys wait for a later batch"
            );
            return Ok(Flushed {
                queued,
                ..Default::default()
            });
        }
    };

    refused(&due, &outcomes);
    let correction_ids: Vec<i64> = corrections.iter().map(|c| c.0).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state().as_str()).collect();
    let status_ids: Vec<i64> = statuses.iter().map(|s| s.0).collect();
    sqlx::query(
        "UPDATE budget_sync_accuracy a
            SET correction = c.state,
                corrected_at = CASE WHEN c.state = 'applied' THEN now() END
           FROM unnest($1::bigint[], $2::text[]) AS c(id, state)
          WHERE a.id = c.id",
    )
    .bind(&correction_ids)
    .bind(&states)
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    sqlx::query("UPDATE campaign_pauses SET redis_status_at = now() WHERE id = ANY($1)")
        .bind(&status_ids)
        .execute(&mut *tx)
        .await
        .map_err(db::classify)?;
    tx.commit().await.map_err(db::classify)?;
    let corrected = outcomes
        .iter()
        .filter(|o| **o == ScriptAnswer::Applied)
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| **o == ScriptAnswer::Refused)
        .count();
    tracing::info!(
        corrections = corrections.len(),
        applied_now = corrected,
        refused,
        statuses = statuses.len(),
        "queued Redis work applied"
    );
    Ok(Flushed {
        corrected,
        refused,
        statuses: statuses.len(),
        queued: 0,
    })
}

/// `BudgetSyncAccuracy` is the mean accuracy of the batch's new messages, in percent; the
/// template alarms below 95.
fn report(
    fresh: &[Synced],
    recorded: &Written,
    corrected_now: &[ScriptAnswer],
    flushed: &Flushed,
    notified: usize,
) {
    let mut metrics = Metrics::for_function(telemetry::function_name());
    if !fresh.is_empty() {
        let mean = fresh.iter().map(|s| s.sync.accuracy()).sum::<f64>() / fresh.len() as f64;
        metrics.put("BudgetSyncAccuracy", mean * 100.0, Unit::Percent);
    }
    let count = |wanted: ScriptAnswer| corrected_now.iter().filter(|o| **o == wanted).count();
    let corrected = count(ScriptAnswer::Applied) + flushed.corrected;
    let refused = count(ScriptAnswer::Refused) + flushed.refused;
    metrics
        .put("CorrectionsApplied", corrected as f64, Unit::Count)
        .put("CorrectionsRefused", refused as f64, Unit::Count)
        .put("RedisWorkQueued", flushed.queued as f64, Unit::Count)
        .put("CampaignsPaused", recorded.paused as f64, Unit::Count)
        .put("PausesNotified", notified as f64, Unit::Count);
    metrics.emit();
    tracing::info!(
        recorded = recorded.rows,
        paused = recorded.paused,
        corrected,
        refused,
        statuses = flushed.statuses,
        queued = flushed.queued,
        notified,
        "budget sync applied"
    );
}
