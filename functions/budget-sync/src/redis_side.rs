//! The Redis side: corrections applied by a script that adds the delta and sets the message's
//! marker atomically, and the work queued while Redis was away (corrections, pauses' status
//! keys), applied by a later batch.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use domain::WorkerError;
use domain::budget::{Correction, MARKER_TTL_SECONDS, Source, counter_key, marker_key, status_key};

use crate::{Deps, Synced};
use adapters::db;

/// Queued Redis work taken per batch; a backlog drains over the following batches.
const FLUSH_LIMIT: i64 = 20_000;

/// Adds ARGV[1] to the counter KEYS[1] unless the marker KEYS[2] exists, then sets the marker
/// for ARGV[2] seconds. A counter never goes below zero. Returns 1 if applied, 0 if the marker
/// was already there, -1 if Redis refused the increment for the counter's sake (the sum
/// overflows, or the counter is not an integer): then nothing was changed and no marker set.
/// Any other error (a read-only replica after a failover, out of memory) is raised, so the
/// pipeline fails and the correction stays queued. A script runs alone, so the check and the
/// set cannot interleave with another correction.
const CORRECT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local counter = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(counter) == 'table' then
  if string.find(counter.err, 'overflow', 1, true) or string.find(counter.err, 'not an integer', 1, true) then
    return -1
  end
  return counter
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
if counter < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
end
return 1
";

static CORRECT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CORRECT_SCRIPT));

/// One correction to apply: the counter, the delta and the message it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due<'a> {
    campaign_id: i64,
    spend_date: NaiveDate,
    delta: i64,
    source: Source<'a>,
}

impl<'a> Due<'a> {
    pub(crate) fn of(s: &'a Synced) -> Option<Self> {
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
pub(crate) enum ScriptAnswer {
    Applied,
    /// An earlier attempt applied it (its marker was there).
    AlreadyApplied,
    Refused,
}

impl ScriptAnswer {
    pub(crate) fn of(answer: i64) -> Self {
        match answer {
            1 => Self::Applied,
            0 => Self::AlreadyApplied,
            _ => Self::Refused,
        }
    }

    pub(crate) fn state(self) -> Correction {
        match self {
            Self::Applied | Self::AlreadyApplied => Correction::Applied,
            Self::Refused => Correction::Refused,
        }
    }
}

/// Logs each refused correction: a counter no correction can fix without an operator.
pub(crate) fn refused(due: &[Due<'_>], outcomes: &[ScriptAnswer]) {
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
pub(crate) async fn apply_in_redis(
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

/// What the queued Redis work came to.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    pub(crate) corrected: usize,
    pub(crate) refused: usize,
    pub(crate) statuses: usize,
    /// Work left queued because Redis could not be reached.
    pub(crate) queued: usize,
}

/// A correction queued while Redis was unreachable (`sql/queued_corrections.sql`).
struct QueuedCorrection {
    id: i64,
    topic: String,
    partition: i32,
    offset: i64,
    produced_at: DateTime<Utc>,
    campaign_id: i64,
    spend_date: NaiveDate,
    correction_delta: i64,
}

/// Applies what earlier batches queued (corrections while Redis was down, new pauses' status
/// keys). The rows stay locked (SKIP LOCKED for a concurrent invocation) until they are
/// marked, and stay queued if Redis fails.
pub(crate) async fn flush_queued(deps: &Deps) -> Result<Flushed, WorkerError> {
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    let corrections =
        sqlx::query_file_as!(QueuedCorrection, "sql/queued_corrections.sql", FLUSH_LIMIT)
            .fetch_all(&mut *tx)
            .await
            .map_err(db::classify)?;
    let statuses = sqlx::query_file!("sql/queued_statuses.sql", FLUSH_LIMIT)
        .fetch_all(&mut *tx)
        .await
        .map_err(db::classify)?;
    if corrections.is_empty() && statuses.is_empty() {
        tx.commit().await.map_err(db::classify)?;
        return Ok(Flushed::default());
    }

    let due: Vec<Due<'_>> = corrections
        .iter()
        .map(|c| Due {
            campaign_id: c.campaign_id,
            spend_date: c.spend_date,
            delta: c.correction_delta,
            source: Source {
                topic: &c.topic,
                partition: c.partition,
                offset: c.offset,
                timestamp_ms: c.produced_at.timestamp_millis(),
            },
        })
        .collect();
    let paused: Vec<i64> = statuses.iter().map(|s| s.campaign_id).collect();
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
    let correction_ids: Vec<i64> = corrections.iter().map(|c| c.id).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state().as_str()).collect();
    let status_ids: Vec<i64> = statuses.iter().map(|s| s.id).collect();
    sqlx::query_file!(
        "sql/settle_corrections.sql",
        &correction_ids,
        &states as &[&str],
    )
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    sqlx::query_file!("sql/statuses_written.sql", &status_ids)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_script_answers_is_what_the_row_records() {
        assert_eq!(ScriptAnswer::of(1), ScriptAnswer::Applied);
        assert_eq!(ScriptAnswer::of(0), ScriptAnswer::AlreadyApplied);
        assert_eq!(ScriptAnswer::of(-1), ScriptAnswer::Refused);
        // Applied now or by an earlier attempt: the counter has it either way.
        assert_eq!(ScriptAnswer::Applied.state(), Correction::Applied);
        assert_eq!(ScriptAnswer::AlreadyApplied.state(), Correction::Applied);
        assert_eq!(ScriptAnswer::Refused.state(), Correction::Refused);
    }
}
