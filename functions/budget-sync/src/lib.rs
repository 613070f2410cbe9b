//! budget-sync: Flink's budget sync results from `budget-management` (consumer group
//! `budget-sync-processor`, SPEC §2). The DB is the source of truth for spend.
//!
//! A batch goes through three steps:
//! 1. **Record** (one transaction, set-based): an accuracy row per message, keyed by the
//!    message's topic position so a redelivery adds nothing. A message asking for a correction
//!    that reaches 5 % queues the delta in its row (`correction = 'pending'`). A
//!    `pause_if_exceeded` message pauses its campaign when the day's DB spend reached the daily
//!    budget, and queues the pause's Redis status key and operators' notification.
//! 2. **Redis** (one pipeline): every queued correction is applied by a Lua script that adds
//!    the delta and sets a per-message marker atomically, so increments made meanwhile survive
//!    and a correction is never applied twice; paused campaigns get their status key. If Redis
//!    is unreachable, everything stays queued and a later batch applies it: the batch itself
//!    succeeds, because the DB side is done.
//! 3. **Notify**: each new pause is published to the operators' SNS topic once.

use std::sync::LazyLock;
use std::time::Duration;

use adapters::emf::{Metrics, Unit};
use adapters::kafka::{self, DeadLetters, KafkaBatchSummary, Record};
use adapters::{aws, config, db, telemetry};
use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, NaiveDate, Utc};
use domain::WorkerError;
use domain::budget::{
    BudgetSync, CampaignAction, MARKER_TTL_SECONDS, Source, counter_key, marker_key, parse_sync,
    status_key,
};
use redis::aio::ConnectionManager;
use sqlx::PgPool;

pub const CONSUMER: &str = "budget-sync-processor";

/// Queued Redis work taken per batch; a backlog drains over the following batches.
const FLUSH_LIMIT: i64 = 20_000;
/// Pauses notified per batch.
const NOTIFY_LIMIT: i64 = 200;

/// Adds ARGV[1] to the counter KEYS[1] unless the marker KEYS[2] exists, and sets the marker
/// for ARGV[2] seconds. A counter never goes below zero. Returns 1 if applied, 0 if the marker
/// was already there.
const CORRECT_SCRIPT: &str = r"
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 0
end
if redis.call('INCRBY', KEYS[1], ARGV[1]) < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
end
return 1
";

static CORRECT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CORRECT_SCRIPT));

#[derive(Debug, Clone)]
pub struct Config {
    pub database: config::DatabaseConfig,
    pub redis: config::RedisConfig,
    pub kafka_brokers: String,
    pub operator_alerts_topic_arn: String,
    /// The most a batch waits on Redis before leaving its work queued.
    pub redis_budget: Duration,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            database: config::DatabaseConfig::from_env()?,
            redis: config::RedisConfig::from_env()?,
            kafka_brokers: config::required("KAFKA_BROKERS")?,
            operator_alerts_topic_arn: config::required("OPERATOR_ALERTS_TOPIC_ARN")?,
            redis_budget: Duration::from_millis(config::parsed_or("REDIS_BUDGET_MS", 10_000)?),
        })
    }
}

pub struct Deps {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub dead_letters: DeadLetters,
    pub sns: aws_sdk_sns::Client,
    pub operator_alerts_topic_arn: String,
    pub redis_budget: Duration,
}

impl Deps {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let sdk = aws::sdk_config().await;
        let db = db::pool(&config.database, &sdk).await?;
        let dead_letters = DeadLetters::new(&config.kafka_brokers, db.clone(), CONSUMER)?;
        Ok(Self {
            db,
            redis: adapters::redis::connect_lazy(&config.redis)?,
            dead_letters,
            sns: aws::sns(&sdk),
            operator_alerts_topic_arn: config.operator_alerts_topic_arn.clone(),
            redis_budget: config.redis_budget,
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
            let recorded = record(&deps.db, &syncs).await?;
            let redis = flush_to_redis(deps).await?;
            let notified = notify_pauses(deps).await?;
            report(&syncs, &recorded, &redis, notified);
            Ok(recorded.rows)
        },
        &deps.dead_letters,
    )
    .await
}

/// What the record step wrote.
#[derive(Debug, Default)]
struct Recorded {
    rows: usize,
    paused: usize,
}

async fn record(db: &PgPool, syncs: &[Synced]) -> Result<Recorded, WorkerError> {
    if syncs.is_empty() {
        return Ok(Recorded::default());
    }
    let topics: Vec<&str> = syncs.iter().map(|s| s.topic.as_str()).collect();
    let partitions: Vec<i32> = syncs.iter().map(|s| s.partition).collect();
    let offsets: Vec<i64> = syncs.iter().map(|s| s.offset).collect();
    let produced: Vec<DateTime<Utc>> = syncs.iter().map(|s| s.produced_at).collect();
    let campaigns: Vec<i64> = syncs.iter().map(|s| s.sync.campaign_id).collect();
    let days: Vec<NaiveDate> = syncs.iter().map(|s| s.sync.spend_date).collect();
    let redis_spent: Vec<i64> = syncs.iter().map(|s| s.sync.redis_spent).collect();
    let db_spent: Vec<i64> = syncs.iter().map(|s| s.sync.db_spent).collect();
    let reported: Vec<Option<f64>> = syncs.iter().map(|s| s.sync.reported_ratio).collect();
    let accuracy: Vec<f64> = syncs.iter().map(|s| s.sync.accuracy()).collect();
    let difference: Vec<f64> = syncs.iter().map(|s| s.sync.difference_ratio()).collect();
    let deltas: Vec<Option<i64>> = syncs.iter().map(|s| s.sync.correction()).collect();
    let pause: Vec<bool> = syncs
        .iter()
        .map(|s| s.sync.campaign_action == CampaignAction::PauseIfExceeded)
        .collect();

    let mut tx = db.begin().await.map_err(db::classify)?;
    // Only messages recorded now can pause: a replay must not pause a campaign that operators
    // resumed since. A pause is for today's (KST) spend; a late message about an earlier day
    // pauses nothing.
    let (rows, paused): (i64, i64) = sqlx::query_as(
        "WITH batch AS (
             SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::timestamptz[],
                                  $5::bigint[], $6::date[], $7::bigint[], $8::bigint[],
                                  $9::float8[], $10::float8[], $11::float8[], $12::bigint[],
                                  $13::bool[])
                 AS b(topic, partition, off, produced_at, campaign_id, spend_date, redis_spent,
                      db_spent, reported_ratio, accuracy, difference_ratio, correction_delta,
                      pause)),
         inserted AS (
             INSERT INTO budget_sync_accuracy
                 (topic, partition, \"offset\", produced_at, campaign_id, spend_date,
                  redis_spent, db_spent, reported_ratio, accuracy, difference_ratio,
                  correction_delta, correction)
             SELECT topic, partition, off, produced_at, campaign_id, spend_date, redis_spent,
                    db_spent, reported_ratio, accuracy, difference_ratio, correction_delta,
                    CASE WHEN correction_delta IS NULL THEN 'none' ELSE 'pending' END
               FROM batch
             ON CONFLICT (topic, partition, \"offset\") DO NOTHING
             RETURNING topic, partition, \"offset\"),
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
             RETURNING id)
         SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM pauses)",
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
    .bind(&pause)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::classify)?;

    // A pending correction was computed from an older reading of the counter than any later
    // message about it; the newest message alone is right, so older pending ones are dropped.
    sqlx::query(
        "WITH pairs AS (
             SELECT DISTINCT a.campaign_id, a.spend_date
               FROM budget_sync_accuracy a
               JOIN unnest($1::bigint[], $2::date[]) AS p(campaign_id, spend_date)
                 ON a.campaign_id = p.campaign_id AND a.spend_date = p.spend_date
              WHERE a.correction = 'pending'),
         latest AS (
             SELECT DISTINCT ON (a.campaign_id, a.spend_date) a.id, a.campaign_id, a.spend_date
               FROM budget_sync_accuracy a
               JOIN pairs p ON a.campaign_id = p.campaign_id AND a.spend_date = p.spend_date
              ORDER BY a.campaign_id, a.spend_date, a.produced_at DESC, a.\"offset\" DESC)
         UPDATE budget_sync_accuracy a SET correction = 'superseded'
           FROM latest l
          WHERE a.campaign_id = l.campaign_id AND a.spend_date = l.spend_date
            AND a.correction = 'pending' AND a.id <> l.id",
    )
    .bind(&campaigns)
    .bind(&days)
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    tx.commit().await.map_err(db::classify)?;
    Ok(Recorded {
        rows: usize::try_from(rows).unwrap_or_default(),
        paused: usize::try_from(paused).unwrap_or_default(),
    })
}

/// What the Redis step did.
#[derive(Debug, Default)]
struct RedisFlush {
    corrected: usize,
    statuses: usize,
    /// Work left queued because Redis could not be reached.
    queued: usize,
}

/// A queued correction: row id, topic, partition, offset, produced at, campaign, day, delta.
type PendingCorrection = (i64, String, i32, i64, DateTime<Utc>, i64, NaiveDate, i64);

/// Applies the queued Redis work in one pipeline. The rows stay locked (SKIP LOCKED for a
/// concurrent invocation) until they are marked, and stay queued if Redis fails.
async fn flush_to_redis(deps: &Deps) -> Result<RedisFlush, WorkerError> {
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let corrections: Vec<PendingCorrection> = sqlx::query_as(
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
        return Ok(RedisFlush::default());
    }

    let mut pipe = redis::pipe();
    // Loaded in the same pipeline, ahead of its calls, so a restarted Redis is never missing it.
    pipe.cmd("SCRIPT").arg("LOAD").arg(CORRECT_SCRIPT).ignore();
    for (_, topic, partition, offset, produced_at, campaign, day, delta) in &corrections {
        let source = Source {
            topic,
            partition: *partition,
            offset: *offset,
            timestamp_ms: produced_at.timestamp_millis(),
        };
        pipe.cmd("EVALSHA")
            .arg(CORRECT.get_hash())
            .arg(2)
            .arg(counter_key(*campaign, *day))
            .arg(marker_key(*campaign, source))
            .arg(*delta)
            .arg(MARKER_TTL_SECONDS);
    }
    for (_, campaign) in &statuses {
        pipe.cmd("SET")
            .arg(status_key(*campaign))
            .arg("paused")
            .ignore();
    }
    let mut redis = deps.redis.clone();
    let outcome = tokio::time::timeout(deps.redis_budget, pipe.query_async::<Vec<i64>>(&mut redis))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {:?}", deps.redis_budget))
        .and_then(|result| result.map_err(anyhow::Error::from));
    let applied = match outcome {
        Ok(applied) => applied,
        Err(err) => {
            let queued = corrections.len() + statuses.len();
            tracing::warn!(
                error = %err,
                queued,
                "Redis unreachable: corrections and status keys stay queued for a later batch"
            );
            return Ok(RedisFlush {
                queued,
                ..Default::default()
            });
        }
    };

    let correction_ids: Vec<i64> = corrections.iter().map(|c| c.0).collect();
    let status_ids: Vec<i64> = statuses.iter().map(|s| s.0).collect();
    sqlx::query(
        "UPDATE budget_sync_accuracy SET correction = 'applied', corrected_at = now()
          WHERE id = ANY($1)",
    )
    .bind(&correction_ids)
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    sqlx::query("UPDATE campaign_pauses SET redis_status_at = now() WHERE id = ANY($1)")
        .bind(&status_ids)
        .execute(&mut *tx)
        .await
        .map_err(db::classify)?;
    tx.commit().await.map_err(db::classify)?;
    let already = applied.iter().filter(|a| **a == 0).count();
    if already > 0 {
        tracing::info!(
            already,
            "corrections already applied by an earlier attempt were skipped"
        );
    }
    Ok(RedisFlush {
        corrected: applied.len() - already,
        statuses: statuses.len(),
        queued: 0,
    })
}

/// A pause to notify: id, campaign, advertiser, day, DB spend, daily budget.
type PendingPause = (i64, i64, i64, NaiveDate, i64, i64);

/// Notifies operators of every pause not yet notified. Each is marked as it is published; if
/// a publish fails, the marks so far are kept and the batch fails, to be retried.
async fn notify_pauses(deps: &Deps) -> Result<usize, WorkerError> {
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let pending: Vec<PendingPause> = sqlx::query_as(
        "SELECT id, campaign_id, advertiser_id, spend_date, db_spent, daily_budget
           FROM campaign_pauses
          WHERE notified_at IS NULL
          ORDER BY id LIMIT $1
            FOR UPDATE SKIP LOCKED",
    )
    .bind(NOTIFY_LIMIT)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::classify)?;
    let mut notified = 0;
    let mut failure = None;
    for (id, campaign_id, advertiser_id, day, db_spent, daily_budget) in pending {
        let message = serde_json::json!({
            "type": "campaign_paused",
            "reason": "daily budget reached",
            "campaign_id": campaign_id,
            "advertiser_id": advertiser_id,
            "spend_date": day,
            "db_spent": db_spent,
            "daily_budget": daily_budget,
        });
        let published = deps
            .sns
            .publish()
            .topic_arn(&deps.operator_alerts_topic_arn)
            .subject("Campaign paused: daily budget reached")
            .message(message.to_string())
            .send()
            .await;
        if let Err(err) = published {
            failure = Some(WorkerError::retryable(
                anyhow::Error::new(err).context("SNS publish"),
            ));
            break;
        }
        sqlx::query("UPDATE campaign_pauses SET notified_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db::classify)?;
        notified += 1;
        tracing::info!(
            campaign_id,
            advertiser_id,
            db_spent,
            daily_budget,
            "operators notified of a pause"
        );
    }
    tx.commit().await.map_err(db::classify)?;
    match failure {
        Some(err) => Err(err),
        None => Ok(notified),
    }
}

/// `BudgetSyncAccuracy` is the batch's mean accuracy in percent; the template alarms below 95.
fn report(syncs: &[Synced], recorded: &Recorded, redis: &RedisFlush, notified: usize) {
    let mut metrics = Metrics::for_function(telemetry::function_name());
    if !syncs.is_empty() {
        let mean = syncs.iter().map(|s| s.sync.accuracy()).sum::<f64>() / syncs.len() as f64;
        metrics.put("BudgetSyncAccuracy", mean * 100.0, Unit::Percent);
    }
    metrics
        .put("CorrectionsApplied", redis.corrected as f64, Unit::Count)
        .put("RedisWorkQueued", redis.queued as f64, Unit::Count)
        .put("CampaignsPaused", recorded.paused as f64, Unit::Count)
        .put("PausesNotified", notified as f64, Unit::Count);
    metrics.emit();
    tracing::info!(
        recorded = recorded.rows,
        paused = recorded.paused,
        corrected = redis.corrected,
        statuses = redis.statuses,
        queued = redis.queued,
        notified,
        "budget sync applied"
    );
}
