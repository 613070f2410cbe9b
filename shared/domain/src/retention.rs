//! Retention (SPEC §3): how long each kind of data is kept, as cut-offs for one run.
//!
//! A run for target date D works "as of" D + 1 (the day it runs on). Everything on or after a
//! cut-off is inside its window and is never touched; everything before it goes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::calendar::{add_days, add_months, kst_day_start, sub_days, sub_months};

pub const RAW_EVENT_DAYS: u64 = 90;
pub const PSEUDONYMISE_AFTER_DAYS: u64 = 30;
pub const HOURLY_MONTHS: u32 = 12;
pub const DAILY_MONTHS: u32 = 5 * 12;
/// Readers' activity (`user_webtoon_events`): the recommendations read the last 120 days and
/// the monthly report two months; past 180 days (a two-month margin for re-runs and late
/// reports) a reader's history serves nothing and is personal data, so it goes.
pub const READER_EVENT_DAYS: u64 = 180;
/// Redis day counters are kept a week: long enough to re-run a settlement, short enough that
/// the counters do not pile up.
pub const COUNTER_DAYS: u64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cutoffs {
    pub as_of: NaiveDate,
    /// Raw events that occurred before this are deleted.
    pub raw_events: DateTime<Utc>,
    /// Raw events that occurred before this have their personal identifiers replaced.
    pub pseudonymise: DateTime<Utc>,
    /// Hourly windows of days before this are deleted.
    pub hourly: NaiveDate,
    /// Daily rows of days before this are deleted.
    pub daily: NaiveDate,
    /// Redis day counters of days before this are deleted.
    pub counters: NaiveDate,
    /// Reader events that occurred before this are deleted.
    pub reader_events: DateTime<Utc>,
}

impl Cutoffs {
    pub fn for_target(target: NaiveDate) -> Self {
        let as_of = add_days(target, 1);
        Self {
            as_of,
            raw_events: kst_day_start(sub_days(as_of, RAW_EVENT_DAYS)),
            pseudonymise: kst_day_start(sub_days(as_of, PSEUDONYMISE_AFTER_DAYS)),
            hourly: sub_months(as_of, HOURLY_MONTHS),
            daily: sub_months(as_of, DAILY_MONTHS),
            counters: sub_days(as_of, COUNTER_DAYS),
            reader_events: kst_day_start(sub_days(as_of, READER_EVENT_DAYS)),
        }
    }
}

/// What to do with a month's raw-event partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionFate {
    /// Entirely inside the window.
    Keep,
    /// Straddles the cut-off: delete its rows before it.
    Trim,
    /// Entirely before the cut-off.
    Drop,
}

/// The fate of the partition holding `month` (its first day) for a raw-event cut-off.
pub fn partition_fate(month: NaiveDate, cutoff: DateTime<Utc>) -> PartitionFate {
    let (start, end) = (kst_day_start(month), kst_day_start(add_months(month, 1)));
    if end <= cutoff {
        PartitionFate::Drop
    } else if start < cutoff {
        PartitionFate::Trim
    } else {
        PartitionFate::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant")
    }

    #[test]
    fn cutoffs_count_back_from_the_day_after_the_target() {
        let c = Cutoffs::for_target(day("2026-11-20"));
        assert_eq!(c.as_of, day("2026-11-21"));
        // 90 days before the 21st of November is the 23rd of August, from 00:00 KST.
        assert_eq!(c.raw_events, at("2026-08-22T15:00:00Z"));
        assert_eq!(c.pseudonymise, at("2026-10-21T15:00:00Z"));
        assert_eq!(c.hourly, day("2025-11-21"));
        assert_eq!(c.daily, day("2021-11-21"));
        assert_eq!(c.counters, day("2026-11-14"));
        // 180 days before the 21st of November is the 25th of May, from 00:00 KST.
        assert_eq!(c.reader_events, at("2026-05-24T15:00:00Z"));
    }

    #[test]
    fn reader_events_outlive_every_reader_of_them() {
        let window = i64::try_from(READER_EVENT_DAYS).expect("a small number");
        // The recommendations' history plus the held-out day, re-run a month late.
        assert!(window >= crate::recommend::HISTORY_DAYS + 1 + 31);
        // The monthly report's month and the one before it, a month late.
        assert!(window >= 3 * 31);
    }

    #[test]
    fn only_partitions_wholly_before_the_cutoff_are_dropped() {
        let cutoff = at("2026-08-22T15:00:00Z");
        assert_eq!(
            partition_fate(day("2026-07-01"), cutoff),
            PartitionFate::Drop
        );
        assert_eq!(
            partition_fate(day("2026-08-01"), cutoff),
            PartitionFate::Trim
        );
        assert_eq!(
            partition_fate(day("2026-09-01"), cutoff),
            PartitionFate::Keep
        );
        // A cut-off on a month's first instant drops the month before and keeps this one.
        let first = kst_day_start(day("2026-09-01"));
        assert_eq!(
            partition_fate(day("2026-08-01"), first),
            PartitionFate::Drop
        );
        assert_eq!(
            partition_fate(day("2026-09-01"), first),
            PartitionFate::Keep
        );
    }
}
