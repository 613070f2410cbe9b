//! The CDP backfill's rules (SPEC §3, seed 001; issue 17): which month of which advertiser the
//! orchestrator queues on a tick, when a failed month is tried again, when a running month is
//! stale. Pure: the orchestrator reads the states, asks [`plan`], and writes what it says.
//!
//! - A NEW advertiser gets its [`BACKFILL_MONTHS`] monthly states on first sight (the oldest
//!   first) and one month in flight at a time, oldest PENDING first; after the last it becomes
//!   EXISTING.
//! - An EXISTING advertiser gets its current month, again only when its data changed since the
//!   month last completed.
//! - A FAILED month is queued again after 1, 2, then 4 minutes; a month that failed
//!   [`MAX_RETRIES`] times is exhausted: the advertiser is deactivated and the operators told.
//! - A RUNNING month older than [`STALE_AFTER`] is stale: FAILED, counted as a retry.

use chrono::{DateTime, Datelike as _, Months, NaiveDate, TimeDelta, Utc};

/// Months a NEW advertiser's backfill covers, this month's predecessor back.
pub const BACKFILL_MONTHS: u32 = 24;
/// Retries a month gets after its first failure.
pub const MAX_RETRIES: u32 = 3;
/// How long a month may run before the cleanup calls it stale.
pub const STALE_AFTER: TimeDelta = TimeDelta::minutes(30);
/// The longest error text kept with a month.
pub const MAX_ERROR_CHARS: usize = 500;

/// A month's processing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Queued,
    Running,
    Completed,
    Failed,
}

/// One month's state as the orchestrator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    /// The first day of the month.
    pub month: NaiveDate,
    pub state: State,
    pub retry_count: u32,
    /// When a FAILED month may be queued again.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What kind of advertiser the orchestrator looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    New,
    Existing,
}

/// What the orchestrator does for one advertiser on one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// First sight of a NEW advertiser: create these PENDING months (oldest first) and queue
    /// the first.
    Start(Vec<NaiveDate>),
    /// Queue this month (PENDING, or FAILED and due).
    Queue(NaiveDate),
    /// A month is queued or running: one at a time.
    Wait,
    /// A month exhausted its retries: deactivate the advertiser and tell the operators.
    Deactivate(NaiveDate),
    /// Every backfill month completed: the advertiser becomes EXISTING.
    Complete,
    /// Nothing to do now (a FAILED month not yet due, or an EXISTING month unchanged).
    Idle,
}

/// The first day of `at`'s month.
pub fn month_of(at: NaiveDate) -> NaiveDate {
    at.with_day(1).unwrap_or(at)
}

/// The [`BACKFILL_MONTHS`] months before `today`'s month, oldest first.
pub fn backfill_months(today: NaiveDate) -> Vec<NaiveDate> {
    let current = month_of(today);
    (1..=BACKFILL_MONTHS)
        .rev()
        .filter_map(|back| current.checked_sub_months(Months::new(back)))
        .collect()
}

/// The wait before retry `retry` (1-based): 1, 2, 4 minutes.
pub fn retry_delay(retry: u32) -> TimeDelta {
    TimeDelta::minutes(1 << retry.saturating_sub(1).min(10))
}

/// A month's error, cut to [`MAX_ERROR_CHARS`] characters.
pub fn bounded_error(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

/// Whether a month RUNNING since `started_at` is stale at `now`.
pub fn is_stale(started_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - started_at > STALE_AFTER
}

/// A month that failed: FAILED with its retry counted and its next attempt, or exhausted
/// (`None`) once it has had [`MAX_RETRIES`] retries; an exhausted month is kept FAILED with a
/// retry count of `MAX_RETRIES + 1`, which [`plan_new`] and [`plan_existing`] read as "deactivate".
pub fn after_failure(retry_count: u32, now: DateTime<Utc>) -> Option<(u32, DateTime<Utc>)> {
    let retry = retry_count + 1;
    (retry <= MAX_RETRIES).then(|| (retry, now + retry_delay(retry)))
}

/// What to do for a NEW advertiser whose months are `months` (empty: first sight).
pub fn plan_new(months: &[Month], today: NaiveDate, now: DateTime<Utc>) -> Plan {
    if months.is_empty() {
        return Plan::Start(backfill_months(today));
    }
    if months
        .iter()
        .any(|m| matches!(m.state, State::Queued | State::Running))
    {
        return Plan::Wait;
    }
    let mut oldest_first: Vec<&Month> = months.iter().collect();
    oldest_first.sort_by_key(|m| m.month);
    // A failed month comes before the months after it: the backfill goes in order.
    for month in oldest_first {
        match month.state {
            State::Completed => continue,
            State::Pending => return Plan::Queue(month.month),
            State::Failed if month.retry_count > MAX_RETRIES => {
                return Plan::Deactivate(month.month);
            }
            State::Failed => {
                return match month.next_attempt_at {
                    Some(at) if at > now => Plan::Idle,
                    _ => Plan::Queue(month.month),
                };
            }
            State::Queued | State::Running => return Plan::Wait,
        }
    }
    Plan::Complete
}

/// What to do for an EXISTING advertiser: its current month, when its data changed after the
/// month last completed (`data_changed_at`, `completed_at`), or when it never ran.
pub fn plan_existing(
    current: Option<&Month>,
    completed_at: Option<DateTime<Utc>>,
    data_changed_at: Option<DateTime<Utc>>,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Plan {
    let month = month_of(today);
    let Some(current) = current else {
        return Plan::Queue(month);
    };
    match current.state {
        State::Queued | State::Running => Plan::Wait,
        State::Pending => Plan::Queue(month),
        State::Failed if current.retry_count > MAX_RETRIES => Plan::Deactivate(month),
        State::Failed => match current.next_attempt_at {
            Some(at) if at > now => Plan::Idle,
            _ => Plan::Queue(month),
        },
        State::Completed => match (completed_at, data_changed_at) {
            (Some(done), Some(changed)) if changed > done => Plan::Queue(month),
            (None, _) => Plan::Queue(month),
            _ => Plan::Idle,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a date")
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_795_000_000, 0).expect("a time")
            + TimeDelta::minutes(minutes)
    }

    fn month(m: NaiveDate, state: State, retry_count: u32, next: Option<DateTime<Utc>>) -> Month {
        Month {
            month: m,
            state,
            retry_count,
            next_attempt_at: next,
        }
    }

    #[test]
    fn a_new_advertiser_gets_24_months_oldest_first() {
        let months = backfill_months(date(2026, 11, 23));
        assert_eq!(months.len(), 24);
        assert_eq!(months[0], date(2024, 11, 1));
        assert_eq!(months[23], date(2026, 10, 1));
        assert!(months.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            plan_new(&[], date(2026, 11, 23), at(0)),
            Plan::Start(months)
        );
    }

    #[test]
    fn one_month_at_a_time_oldest_pending_first() {
        let today = date(2026, 11, 23);
        let months = [
            month(date(2024, 11, 1), State::Completed, 0, None),
            month(date(2024, 12, 1), State::Pending, 0, None),
            month(date(2025, 1, 1), State::Pending, 0, None),
        ];
        assert_eq!(
            plan_new(&months, today, at(0)),
            Plan::Queue(date(2024, 12, 1))
        );
        let running = [
            month(date(2024, 11, 1), State::Running, 0, None),
            month(date(2024, 12, 1), State::Pending, 0, None),
        ];
        assert_eq!(plan_new(&running, today, at(0)), Plan::Wait);
        let done = [month(date(2024, 11, 1), State::Completed, 0, None)];
        assert_eq!(plan_new(&done, today, at(0)), Plan::Complete);
    }

    #[test]
    fn a_failed_month_is_retried_after_1_2_4_minutes_then_exhausted() {
        assert_eq!(
            [1, 2, 3].map(retry_delay),
            [1, 2, 4].map(TimeDelta::minutes)
        );
        assert_eq!(after_failure(0, at(0)), Some((1, at(1))));
        assert_eq!(after_failure(1, at(0)), Some((2, at(2))));
        assert_eq!(after_failure(2, at(0)), Some((3, at(4))));
        assert_eq!(after_failure(3, at(0)), None);
        let today = date(2026, 11, 23);
        let failed = |retries, next| {
            [
                month(date(2025, 1, 1), State::Failed, retries, next),
                month(date(2025, 2, 1), State::Pending, 0, None),
            ]
        };
        assert_eq!(
            plan_new(&failed(1, Some(at(1))), today, at(0)),
            Plan::Idle,
            "not due yet"
        );
        assert_eq!(
            plan_new(&failed(1, Some(at(1))), today, at(1)),
            Plan::Queue(date(2025, 1, 1))
        );
        assert_eq!(
            plan_new(&failed(4, None), today, at(0)),
            Plan::Deactivate(date(2025, 1, 1))
        );
    }

    #[test]
    fn an_existing_advertisers_month_runs_again_only_when_its_data_changed() {
        let today = date(2026, 11, 23);
        let current = month(date(2026, 11, 1), State::Completed, 0, None);
        assert_eq!(
            plan_existing(None, None, None, today, at(0)),
            Plan::Queue(date(2026, 11, 1))
        );
        assert_eq!(
            plan_existing(Some(&current), Some(at(0)), Some(at(-5)), today, at(1)),
            Plan::Idle
        );
        assert_eq!(
            plan_existing(Some(&current), Some(at(0)), Some(at(3)), today, at(5)),
            Plan::Queue(date(2026, 11, 1))
        );
        let running = month(date(2026, 11, 1), State::Running, 0, None);
        assert_eq!(
            plan_existing(Some(&running), None, Some(at(3)), today, at(5)),
            Plan::Wait
        );
    }

    #[test]
    fn running_longer_than_30_minutes_is_stale_and_errors_are_bounded() {
        assert!(!is_stale(at(0), at(30)));
        assert!(is_stale(at(0), at(31)));
        assert_eq!(
            bounded_error(&"가".repeat(600)).chars().count(),
            MAX_ERROR_CHARS
        );
        assert_eq!(month_of(date(2026, 2, 28)), date(2026, 2, 1));
    }
}
