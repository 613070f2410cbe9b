//! retention (SPEC §3), 04:00 Asia/Seoul: deletes what is past its window and pseudonymises
//! personal identifiers, as of the day after the target date (see `domain::retention`):
//!
//! - raw ad events: 90 days. A month partition wholly before the cut-off is dropped; the one
//!   straddling it loses its rows before the cut-off (one day's worth on a daily run);
//! - hourly aggregates (`performance_metrics`): 1 year; daily aggregates: 5 years;
//! - personal identifiers of raw events older than 30 days: `device_id` becomes a SHA-256 of a
//!   random per-run salt and the id, the salt never leaving the run's memory, and `ip` is cut
//!   to its /24 (IPv4) or /48 (IPv6) network. Without the salt the hash cannot be reversed or
//!   matched across runs; the network no longer names a host. Progress is kept, so each run
//!   reads only the events that came of age since the last;
//! - readers' activity (`user_webtoon_events`, what the recommendations learn from): 180 days;
//! - Redis day counters: 7 days (found with SCAN, removed with pipelined UNLINKs).
//!
//! `{"dry_run": true}` reports the same figures and changes nothing. Every step is idempotent,
//! so a retry after a failure (Redis away, say) finishes the job without doing anything twice.

use adapters::bootstrap::ScheduledJob;
use adapters::jobs::{JobRun, Reporter};
use adapters::{config, db};
use chrono::NaiveDate;
use domain::WorkerError;
use domain::budget::parse_counter_key;
use domain::calendar::{kst_date, kst_day_start, month_of};
use domain::retention::{Cutoffs, PartitionFate, partition_fate};
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{info, instrument};

pub const JOB: &str = "retention";
const PSEUDONYMISED: &str = "ad_events.pseudonymised";

pub struct Deps {
    pub reporter: Reporter,
    pub redis: ConnectionManager,
}

impl Deps {
    pub async fn from_env() -> anyhow::Result<Self> {
        let redis = config::RedisConfig::from_env()?;
        Ok(Self {
            reporter: ScheduledJob::from_env().await?.reporter,
            redis: adapters::redis::connect_lazy(&redis)?,
        })
    }
}

/// What a run removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub partitions_dropped: Vec<String>,
    pub raw_events_deleted: i64,
    pub pseudonymised: i64,
    pub hourly_deleted: i64,
    pub daily_deleted: i64,
    pub reader_events_deleted: i64,
    pub counters_deleted: i64,
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    JobRun::execute(JOB, payload, &deps.reporter, |run| run_job(run, deps)).await
}

async fn run_job(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let cutoffs = Cutoffs::for_target(run.target_date);
    let mut removed = apply_to_db(&deps.reporter.db, &cutoffs, run.dry_run)
        .await
        .map_err(db::classify)?;
    let mut redis = deps.redis.clone();
    removed.counters_deleted = expire_counters(&mut redis, cutoffs.counters, run.dry_run)
        .await
        .map_err(|err| {
            WorkerError::retryable(anyhow::Error::new(err).context("remove expired Redis counters"))
        })?;
    let counts = [
        (
            "partitions_dropped",
            removed.partitions_dropped.len() as i64,
        ),
        ("raw_events_deleted", removed.raw_events_deleted),
        ("pseudonymised", removed.pseudonymised),
        ("hourly_deleted", removed.hourly_deleted),
        ("daily_deleted", removed.daily_deleted),
        ("reader_events_deleted", removed.reader_events_deleted),
        ("counters_deleted", removed.counters_deleted),
    ];
    let details = json!({
        "cutoffs": cutoffs,
        "partitions_dropped": removed.partitions_dropped,
    });
    run.report(&deps.reporter, &counts, details).await
}

/// Everything on the database side, step by step. Public for the benchmark.
#[instrument(skip(db))]
pub async fn apply_to_db(
    db: &PgPool,
    cutoffs: &Cutoffs,
    dry_run: bool,
) -> Result<Removed, sqlx::Error> {
    let mut removed = Removed::default();
    let partitions = sqlx::query_file!("sql/partitions.sql")
        .fetch_all(db)
        .await?;
    for partition in partitions {
        let name = partition.name;
        if partition_fate(partition.month, cutoffs.raw_events) == PartitionFate::Drop {
            // Dynamic SQL, as a table's name cannot be a parameter: the name comes from the
            // catalogue and matched the partition naming rule.
            let rows: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
                    .fetch_one(db)
                    .await?;
            removed.raw_events_deleted += rows;
            if !dry_run {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
                    .execute(db)
                    .await?;
            }
            removed.partitions_dropped.push(name);
        }
    }
    // What is left before the cut-off is in the partition straddling it, from its month's start.
    let straddling = kst_day_start(month_of(kst_date(cutoffs.raw_events)));
    removed.raw_events_deleted += sqlx::query_file_scalar!(
        "sql/delete_raw_events.sql",
        cutoffs.raw_events,
        straddling,
        dry_run
    )
    .fetch_one(db)
    .await?;
    removed.pseudonymised = pseudonymise(db, cutoffs, dry_run).await?;
    removed.hourly_deleted =
        sqlx::query_file_scalar!("sql/delete_hourly.sql", cutoffs.hourly, dry_run)
            .fetch_one(db)
            .await?;
    removed.daily_deleted =
        sqlx::query_file_scalar!("sql/delete_daily.sql", cutoffs.daily, dry_run)
            .fetch_one(db)
            .await?;
    removed.reader_events_deleted = sqlx::query_file_scalar!(
        "sql/delete_reader_events.sql",
        cutoffs.reader_events,
        dry_run
    )
    .fetch_one(db)
    .await?;
    info!(?removed, dry_run, "database retention applied");
    Ok(removed)
}

/// Pseudonymises raw events from where the last run stopped (at the earliest, the raw-event
/// cut-off: older events are deleted) up to the cut-off, and moves the mark, in one
/// transaction.
async fn pseudonymise(db: &PgPool, cutoffs: &Cutoffs, dry_run: bool) -> Result<i64, sqlx::Error> {
    let cutoff = cutoffs.pseudonymise;
    let mut tx = db.begin().await?;
    let from = sqlx::query_file_scalar!("sql/pseudonymised_upto.sql", PSEUDONYMISED)
        .fetch_optional(&mut *tx)
        .await?;
    let from = from.map_or(cutoffs.raw_events, |mark| mark.max(cutoffs.raw_events));
    if from >= cutoff {
        return Ok(0);
    }
    if dry_run {
        return sqlx::query_file_scalar!("sql/count_pseudonymisable.sql", from, cutoff)
            .fetch_one(&mut *tx)
            .await;
    }
    let changed = sqlx::query_file!("sql/pseudonymise.sql", from, cutoff, run_salt())
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
    sqlx::query_file!("sql/pseudonymised_mark.sql", PSEUDONYMISED, cutoff)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(changed)
}

/// Two v4 UUIDs' worth (244 random bits) for this run only: never stored, never logged.
fn run_salt() -> Vec<u8> {
    let mut salt = uuid::Uuid::new_v4().as_bytes().to_vec();
    salt.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt
}

/// Removes the day counters of days before `cutoff`; returns how many (would) go.
#[instrument(skip(redis))]
pub async fn expire_counters(
    redis: &mut ConnectionManager,
    cutoff: NaiveDate,
    dry_run: bool,
) -> redis::RedisResult<i64> {
    let expired: Vec<String> = adapters::redis::scan_match(redis, "budget:spent:*")
        .await?
        .into_iter()
        .filter(|key| parse_counter_key(key).is_some_and(|(_, day)| day < cutoff))
        .collect();
    if dry_run {
        return Ok(expired.len() as i64);
    }
    Ok(adapters::redis::unlink_pipelined(redis, &expired).await? as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_salts_afresh_with_244_random_bits() {
        let (a, b) = (run_salt(), run_salt());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
