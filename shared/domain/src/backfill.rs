//! The CDP backfill's rules (SPEC §3, seed 001; issue 17): which month of which advertiser the
//! orchestrator queues on a tick, when a failed month is tried again, when a running month is
//! stale. Pure: the orchestrator reads the states, asks [`plan_new`] or [`plan_existing`], and
//! writes what they say.
//!
//! - A NEW advertiser gets its [`BACKFILL_MONTHS`] monthly states on first sight (the oldest
//!   first) and one month in flight at a time, oldest PENDING first; after the last it becomes
//!   EXISTING.
//! - An EXISTING advertiser gets its [`current_month`], again only when its data changed after
//!   the month's last run started (or an operator asks).
//! - A FAILED month is queued again after 1, 2, then 4 minutes; a month that failed
//!   [`MAX_RETRIES`] times is exhausted: the advertiser is deactivated and the operators told.
//! - A month RUNNING for longer than [`STALE_AFTER`] is stale (its worker died): FAILED,
//!   counted as a retry. A month QUEUED for longer than [`LOST_AFTER`] lost its message: it is
//!   PENDING again, not counted (a long queue is not the month's fault).

use chrono::{DateTime, Months, NaiveDate, TimeDelta, Utc};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::WorkerError;
use crate::calendar::{add_months, month_of, sub_days};
use crate::retention::RAW_EVENT_DAYS;

/// Months a NEW advertiser's backfill covers, this month's predecessor back.
pub const BACKFILL_MONTHS: u32 = 24;
/// Retries a month gets after its first failure.
pub const MAX_RETRIES: u32 = 3;
/// How long a month may run before the cleanup calls it stale.
pub const STALE_AFTER: TimeDelta = TimeDelta::minutes(30);
/// How long a month may wait QUEUED before its message counts as lost: longer than SQS takes to
/// give up on a message (3 receives, an hour's visibility each, then the DLQ).
pub const LOST_AFTER: TimeDelta = TimeDelta::hours(4);
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

impl State {
    /// As the database stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Queued,
            Self::Running,
            Self::Completed,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
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

/// An EXISTING advertiser's current month on `today`: the month of the last finished day
/// (yesterday in Asia/Seoul), so a month is processed once more after its last day is rolled
/// up, on the 1st of the next.
pub fn current_month(today: NaiveDate) -> NaiveDate {
    month_of(sub_days(today, 1))
}

/// The [`BACKFILL_MONTHS`] months before the [`current_month`], oldest first.
pub fn backfill_months(today: NaiveDate) -> Vec<NaiveDate> {
    let current = current_month(today);
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

/// Months RUNNING since before this are stale at `now`.
pub fn stale_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - STALE_AFTER
}

/// Months QUEUED since before this lost their message at `now`.
pub fn lost_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - LOST_AFTER
}

/// A month that failed: FAILED with its retry counted and its next attempt, or exhausted
/// (`None`) once it has had [`MAX_RETRIES`] retries; an exhausted month is kept FAILED with a
/// retry count of `MAX_RETRIES + 1`, which [`plan_new`] and [`plan_existing`] read as "deactivate".
pub fn after_failure(retry_count: u32, now: DateTime<Utc>) -> Option<(u32, DateTime<Utc>)> {
    let retry = retry_count + 1;
    (retry <= MAX_RETRIES).then(|| (retry, now + retry_delay(retry)))
}

/// Where a NEW advertiser's backfill stands, as the orchestrator reads it: whether its months
/// exist, and its frontier: the month in flight if there is one, else its oldest month not
/// COMPLETED (none: every month is done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub started: bool,
    pub frontier: Option<Month>,
}

/// What to do for a NEW advertiser. The backfill goes oldest first, one month at a time, so
/// its frontier decides: a FAILED month holds back the months after it.
///
/// `due_by`: a FAILED month is queued once its next attempt is due by then (the caller queues
/// it with a delay until that attempt; see [`queue_delay`]).
pub fn plan_new(backfill: &Backfill, today: NaiveDate, due_by: DateTime<Utc>) -> Plan {
    if !backfill.started {
        return Plan::Start(backfill_months(today));
    }
    match &backfill.frontier {
        Some(month) => plan_frontier(month, due_by),
        None => Plan::Complete,
    }
}

/// The month in flight, or the oldest one not COMPLETED: months go in order, one at a time.
fn plan_frontier(month: &Month, due_by: DateTime<Utc>) -> Plan {
    match month.state {
        State::Queued | State::Running => Plan::Wait,
        State::Pending => Plan::Queue(month.month),
        // Not a frontier (the reader skips COMPLETED months); nothing to do.
        State::Completed => Plan::Idle,
        State::Failed => plan_failed(month, due_by),
    }
}

/// A FAILED month: deactivate once exhausted, else queue it when its backoff is over.
fn plan_failed(month: &Month, due_by: DateTime<Utc>) -> Plan {
    if month.retry_count > MAX_RETRIES {
        return Plan::Deactivate(month.month);
    }
    match month.next_attempt_at {
        Some(at) if at > due_by => Plan::Idle,
        _ => Plan::Queue(month.month),
    }
}

/// Where an EXISTING advertiser's months stand, as the orchestrator reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// A month in flight, else the oldest month before the current one not COMPLETED (one
    /// that failed, or that went by while its advertiser was inactive or still backfilling).
    pub frontier: Option<Month>,
    /// The [`current_month`]'s state; none before its first run.
    pub current: Option<Month>,
    /// When the month's last completed run started.
    pub ran_from: Option<DateTime<Utc>>,
    /// When the month's data last changed (the daily rollup rewrote one of its days).
    pub data_changed_at: Option<DateTime<Utc>>,
    /// An operator asked for a run now (the data may not have changed).
    pub requested: bool,
}

/// What to do for an EXISTING advertiser: an unfinished earlier month first, in order, as for
/// [`plan_new`]; then its current month, when it never ran, when its data changed after its
/// last run started, or when an operator asks.
pub fn plan_existing(existing: &Existing, today: NaiveDate, due_by: DateTime<Utc>) -> Plan {
    if let Some(frontier) = &existing.frontier {
        return plan_frontier(frontier, due_by);
    }
    let month = current_month(today);
    let Some(current) = &existing.current else {
        return Plan::Queue(month);
    };
    match current.state {
        State::Queued | State::Running => Plan::Wait,
        State::Pending => Plan::Queue(month),
        State::Failed => plan_failed(current, due_by),
        State::Completed => {
            let changed = match (existing.ran_from, existing.data_changed_at) {
                (Some(ran), Some(changed)) => changed > ran,
                (None, _) => true,
                (Some(_), None) => false,
            };
            if changed || existing.requested {
                Plan::Queue(month)
            } else {
                Plan::Idle
            }
        }
    }
}

/// How long to hold back a queued month whose next attempt is at `next_attempt_at`: the SQS
/// delay that makes the retry happen at its time, not at the next tick after it. SQS delays
/// at most 15 minutes.
pub fn queue_delay(next_attempt_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> u32 {
    next_attempt_at
        .map(|at| (at - now).num_seconds().clamp(0, 900) as u32)
        .unwrap_or(0)
}

/// One month of one advertiser to process: the body of a jobs-queue message. `token` is the
/// claim the orchestrator queued the month under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub advertiser_id: i64,
    /// `YYYY-MM`.
    #[serde(with = "month_text")]
    pub month: NaiveDate,
    pub token: Uuid,
}

impl Job {
    /// Reads a jobs-queue message; anything else is refused with its reason.
    pub fn parse(body: &str) -> Result<Self, WorkerError> {
        if body.len() > MAX_JOB_BYTES {
            return Err(WorkerError::out_of_range(format_args!(
                "job message of {} bytes (at most {MAX_JOB_BYTES})",
                body.len()
            )));
        }
        let job: Self = serde_json::from_str(body).map_err(|err| {
            WorkerError::malformed(format_args!(
                "job message: {err} (expected {{\"advertiser_id\": 1, \"month\": \"YYYY-MM\", \"token\": \"uuid\"}})"
            ))
        })?;
        if job.advertiser_id <= 0 {
            return Err(WorkerError::out_of_range(format_args!(
                "job message: advertiser_id {} is not positive",
                job.advertiser_id
            )));
        }
        Ok(job)
    }
}

/// A jobs message is about 100 bytes; anything much larger is not one of ours.
const MAX_JOB_BYTES: usize = 1024;

/// Months as `YYYY-MM`, the form the S3 layout and the messages use.
mod month_text {
    use chrono::NaiveDate;
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(month: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::month_key(*month))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_month(&text)
            .ok_or_else(|| D::Error::custom(format!("month {text:?} is not YYYY-MM")))
    }
}

/// `2026-10` for any day of October 2026.
pub fn month_key(month: NaiveDate) -> String {
    month.format("%Y-%m").to_string()
}

/// The first day of a `YYYY-MM` month (years 2000 to 2999).
pub fn parse_month(text: &str) -> Option<NaiveDate> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4
        || month.len() != 2
        || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let year: i32 = year.parse().ok()?;
    if !(2000..3000).contains(&year) {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month.parse().ok()?, 1)
}

/// The two datasets of an advertiser-month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    Performance,
    Audience,
}

impl Dataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Performance => "performance",
            Self::Audience => "audience",
        }
    }
}

/// Where a dataset of an advertiser-month lives: Hive-style partitions a query engine reads as
/// the columns `advertiser_id` and `month`.
pub fn object_key(advertiser_id: i64, month: NaiveDate, dataset: Dataset) -> String {
    format!(
        "cdp/advertiser_id={advertiser_id}/month={}/{}.parquet",
        month_key(month),
        dataset.as_str()
    )
}

/// Whether a month's raw events are all still kept on `today` (retention keeps
/// [`RAW_EVENT_DAYS`] days): only then are its audience facts whole. A month any of whose days
/// are gone reports `not_retained` instead of partial facts.
pub fn audience_retained(month: NaiveDate, today: NaiveDate) -> bool {
    month_of(month) >= sub_days(today, RAW_EVENT_DAYS)
}

/// The days of `month` whose data is final on `today`: the whole month once it is over, up to
/// yesterday while it runs (today's events are not rolled up yet, and a dataset must be the
/// same whenever it is built from the same data). `None`: the month has no finished day.
pub fn finished_days(month: NaiveDate, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let first = month_of(month);
    let end = add_months(first, 1).min(today);
    (end > first).then_some((first, end))
}

/// One campaign-day of performance, as the daily aggregates hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCounts {
    pub impressions: i64,
    pub clicks: i64,
    pub conversions: i64,
    pub cost_micros: i64,
}

/// The derived rates of a campaign-day: `None` where the denominator is zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub ctr: Option<f64>,
    pub cvr: Option<f64>,
    /// Cost per acquisition in micros of a won.
    pub cpa_micros: Option<f64>,
}

impl DailyCounts {
    /// Why a row cannot be a fact (it is counted as a failed record and left out), if it
    /// cannot: a negative count, or more clicks than impressions.
    pub fn flaw(&self) -> Option<&'static str> {
        if self.impressions < 0 || self.clicks < 0 || self.conversions < 0 || self.cost_micros < 0 {
            Some("negative count")
        } else if self.clicks > self.impressions {
            Some("more clicks than impressions")
        } else {
            None
        }
    }

    pub fn rates(&self) -> Rates {
        let ratio = |num: i64, den: i64| (den > 0).then(|| num as f64 / den as f64);
        Rates {
            ctr: ratio(self.clicks, self.impressions),
            cvr: ratio(self.conversions, self.clicks),
            cpa_micros: ratio(self.cost_micros, self.conversions),
        }
    }
}

/// The pseudonym an audience fact carries for a device: 128 bits of SHA-256 over the
/// advertiser and the device id as stored, so one advertiser's CDP cannot be joined with
/// another's on devices, and the id itself never leaves the platform.
pub fn device_key(advertiser_id: i64, device_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"cdp/v1/")
        .chain_update(advertiser_id.to_be_bytes())
        .chain_update(b"/")
        .chain_update(device_id.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
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

    fn backfill(started: bool, frontier: Option<Month>) -> Backfill {
        Backfill { started, frontier }
    }

    #[test]
    fn a_new_advertiser_gets_24_months_oldest_first() {
        let months = backfill_months(date(2026, 11, 23));
        assert_eq!(months.len(), 24);
        assert_eq!(months[0], date(2024, 11, 1));
        assert_eq!(
            months[23],
            date(2026, 10, 1),
            "the 24 months before the current one"
        );
        assert!(months.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            plan_new(&backfill(false, None), date(2026, 11, 23), at(0)),
            Plan::Start(months)
        );
    }

    #[test]
    fn one_month_at_a_time_oldest_pending_first() {
        let today = date(2026, 11, 23);
        let pending = backfill(
            true,
            Some(month(date(2024, 12, 1), State::Pending, 0, None)),
        );
        assert_eq!(
            plan_new(&pending, today, at(0)),
            Plan::Queue(date(2024, 12, 1))
        );
        for state in [State::Queued, State::Running] {
            let in_flight = backfill(true, Some(month(date(2024, 11, 1), state, 0, None)));
            assert_eq!(plan_new(&in_flight, today, at(0)), Plan::Wait);
        }
        assert_eq!(
            plan_new(&backfill(true, None), today, at(0)),
            Plan::Complete
        );
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
            backfill(
                true,
                Some(month(date(2025, 1, 1), State::Failed, retries, next)),
            )
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
        let november = date(2026, 11, 1);
        let existing = |state, ran_from, changed, requested| Existing {
            frontier: None,
            current: Some(month(november, state, 0, None)),
            ran_from,
            data_changed_at: changed,
            requested,
        };
        let never = Existing {
            frontier: None,
            current: None,
            ran_from: None,
            data_changed_at: None,
            requested: false,
        };
        assert_eq!(plan_existing(&never, today, at(0)), Plan::Queue(november));
        let unchanged = existing(State::Completed, Some(at(0)), Some(at(-5)), false);
        assert_eq!(plan_existing(&unchanged, today, at(1)), Plan::Idle);
        let asked = existing(State::Completed, Some(at(0)), Some(at(-5)), true);
        assert_eq!(plan_existing(&asked, today, at(1)), Plan::Queue(november));
        let changed = existing(State::Completed, Some(at(0)), Some(at(3)), false);
        assert_eq!(plan_existing(&changed, today, at(5)), Plan::Queue(november));
        let running = Existing {
            frontier: Some(month(november, State::Running, 0, None)),
            ..existing(State::Running, None, Some(at(3)), true)
        };
        assert_eq!(plan_existing(&running, today, at(5)), Plan::Wait);
        // October failed, or went by unprocessed: it goes first, with its backoff.
        let october = date(2026, 10, 1);
        let behind = |state, retries, next| Existing {
            frontier: Some(month(october, state, retries, next)),
            ..unchanged.clone()
        };
        assert_eq!(
            plan_existing(&behind(State::Pending, 0, None), today, at(1)),
            Plan::Queue(october)
        );
        assert_eq!(
            plan_existing(&behind(State::Failed, 1, Some(at(9))), today, at(1)),
            Plan::Idle
        );
        assert_eq!(
            plan_existing(&behind(State::Failed, 4, None), today, at(1)),
            Plan::Deactivate(october)
        );
        // On the 1st the current month is still the last one, until its last day is in.
        assert_eq!(current_month(date(2026, 12, 1)), november);
        assert_eq!(current_month(date(2026, 12, 2)), date(2026, 12, 1));
    }

    #[test]
    fn a_retry_is_delayed_to_its_time_within_sqs_limits() {
        assert_eq!(queue_delay(None, at(0)), 0);
        assert_eq!(queue_delay(Some(at(2)), at(0)), 120);
        assert_eq!(queue_delay(Some(at(-2)), at(0)), 0);
        assert_eq!(queue_delay(Some(at(60)), at(0)), 900);
    }

    #[test]
    fn running_longer_than_30_minutes_is_stale_and_errors_are_bounded() {
        assert_eq!(stale_before(at(31)), at(1));
        assert_eq!(lost_before(at(0)), at(-240));
        assert_eq!(
            bounded_error(&"가".repeat(600)).chars().count(),
            MAX_ERROR_CHARS
        );
        assert_eq!(month_of(date(2026, 2, 28)), date(2026, 2, 1));
        assert_eq!(State::parse("FAILED"), Some(State::Failed));
        assert_eq!(State::parse("failed"), None);
    }

    #[test]
    fn jobs_messages_are_read_strictly() {
        let job = Job::parse(
            r#"{"advertiser_id": 7, "month": "2025-03", "token": "0b7e7a3c-3f7e-4f4e-9a55-2b8a2c6a1f00"}"#,
        )
        .expect("a job");
        assert_eq!(job.month, date(2025, 3, 1));
        assert_eq!(
            serde_json::to_value(&job).expect("json")["month"],
            "2025-03"
        );
        for bad in [
            "",
            "[]",
            r#"{"advertiser_id": 7, "month": "2025-3", "token": "0b7e7a3c-3f7e-4f4e-9a55-2b8a2c6a1f00"}"#,
            r#"{"advertiser_id": 7, "month": "2025-13", "token": "0b7e7a3c-3f7e-4f4e-9a55-2b8a2c6a1f00"}"#,
            r#"{"advertiser_id": 0, "month": "2025-03", "token": "0b7e7a3c-3f7e-4f4e-9a55-2b8a2c6a1f00"}"#,
            r#"{"advertiser_id": 7, "month": "2025-03", "token": "x"}"#,
            r#"{"advertiser_id": 7, "month": "2025-03", "token": "0b7e7a3c-3f7e-4f4e-9a55-2b8a2c6a1f00", "x": 1}"#,
            &format!(r#"{{"advertiser_id": 7, "pad": "{}"}}"#, "x".repeat(2000)),
        ] {
            let err = Job::parse(bad).expect_err(bad);
            assert!(!err.is_retryable(), "{bad}");
        }
        assert_eq!(parse_month("+2025-03"), None);
        assert_eq!(parse_month("1999-12"), None);
    }

    #[test]
    fn the_layout_is_hive_partitioned_by_advertiser_and_month() {
        assert_eq!(
            object_key(42, date(2026, 10, 1), Dataset::Audience),
            "cdp/advertiser_id=42/month=2026-10/audience.parquet"
        );
    }

    #[test]
    fn audience_facts_only_for_months_whose_raw_events_are_all_kept() {
        let today = date(2026, 11, 23);
        // 90 days back is 2026-08-25: September is whole, August is not.
        assert!(audience_retained(date(2026, 9, 1), today));
        assert!(!audience_retained(date(2026, 8, 1), today));
        assert!(audience_retained(date(2026, 11, 1), today));
    }

    #[test]
    fn a_running_month_covers_its_finished_days_only() {
        let today = date(2026, 11, 23);
        assert_eq!(
            finished_days(date(2026, 10, 1), today),
            Some((date(2026, 10, 1), date(2026, 11, 1)))
        );
        assert_eq!(
            finished_days(date(2026, 11, 1), today),
            Some((date(2026, 11, 1), date(2026, 11, 23)))
        );
        assert_eq!(finished_days(date(2026, 11, 1), date(2026, 11, 1)), None);
    }

    #[test]
    fn rates_and_flaws_of_a_campaign_day() {
        let day = DailyCounts {
            impressions: 1000,
            clicks: 50,
            conversions: 5,
            cost_micros: 10_000_000,
        };
        assert_eq!(day.flaw(), None);
        let rates = day.rates();
        assert_eq!(rates.ctr, Some(0.05));
        assert_eq!(rates.cvr, Some(0.1));
        assert_eq!(rates.cpa_micros, Some(2_000_000.0));
        let empty = DailyCounts {
            impressions: 0,
            clicks: 0,
            conversions: 0,
            cost_micros: 0,
        };
        assert_eq!(empty.rates().ctr, None);
        assert_eq!(
            DailyCounts {
                clicks: 2000,
                ..day.clone()
            }
            .flaw(),
            Some("more clicks than impressions")
        );
        assert_eq!(
            DailyCounts {
                cost_micros: -1,
                ..day
            }
            .flaw(),
            Some("negative count")
        );
    }

    #[test]
    fn device_keys_are_per_advertiser_pseudonyms() {
        let key = device_key(1, "device-a");
        assert_eq!(key.len(), 32);
        assert_eq!(key, device_key(1, "device-a"));
        assert_ne!(key, device_key(2, "device-a"));
        assert!(!key.contains("device"));
        // The first 128 bits of SHA-256("cdp/v1/" ‖ advertiser id, 8 bytes big-endian ‖ "/" ‖
        // device id), as Python's hashlib computes them: an answer not from this code.
        assert_eq!(key, "a6de9f3572b5e8cd8f54ff510f2b0f40");
        assert_eq!(
            device_key(2, "device-a"),
            "26320f6fbed7a7770cdb02b122f8ed7e"
        );
    }
}
