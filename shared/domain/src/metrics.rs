//! Performance metrics (SPEC §2, `performance-metrics`): one Flink window result per record.
//! Validation rules live here; the function stores valid windows set-based, keyed by
//! (campaign, window size, window start), so a duplicate window is a no-op.

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use serde::Deserialize;

use crate::WorkerError;
use crate::calendar::kst_date;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum WindowSize {
    #[serde(rename = "1m")]
    OneMinute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

impl WindowSize {
    pub fn seconds(self) -> i64 {
        match self {
            Self::OneMinute => 60,
            Self::FiveMinutes => 300,
            Self::OneHour => 3600,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneMinute => "1m",
            Self::FiveMinutes => "5m",
            Self::OneHour => "1h",
        }
    }
}

#[derive(Deserialize)]
struct WireWindow {
    campaign_id: i64,
    advertiser_id: i64,
    window_size: WindowSize,
    window_start: DateTime<Utc>,
    impressions: i64,
    clicks: i64,
    conversions: i64,
    cost: f64,
}

/// A validated window result.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWindow {
    pub campaign_id: i64,
    pub advertiser_id: i64,
    pub window_size: WindowSize,
    pub window_start: DateTime<Utc>,
    /// The window's calendar date in Asia/Seoul, the date reports and rollups use.
    pub window_date: NaiveDate,
    pub impressions: i64,
    pub clicks: i64,
    pub conversions: i64,
    /// Cost in millionths of the currency unit: exact sums, no float drift.
    pub cost_micros: i64,
}

impl MetricWindow {
    pub fn key(&self) -> (i64, WindowSize, DateTime<Utc>) {
        (self.campaign_id, self.window_size, self.window_start)
    }
}

/// The most impressions (and so clicks and conversions) one window may count: far above any
/// campaign, and low enough that a month of hourly windows sums well inside a `bigint`.
pub const MAX_WINDOW_COUNT: i64 = 1_000_000_000_000;

pub fn parse_window(value: &[u8]) -> Result<MetricWindow, WorkerError> {
    let w: WireWindow = crate::text::json_object(value)?;
    if w.campaign_id <= 0 || w.advertiser_id <= 0 {
        return Err(WorkerError::out_of_range(
            "campaign_id and advertiser_id must be positive",
        ));
    }
    if w.window_start.timestamp() % w.window_size.seconds() != 0
        || w.window_start.timestamp_subsec_nanos() != 0
    {
        return Err(WorkerError::inconsistent(format_args!(
            "window_start {} is not aligned to {}",
            w.window_start,
            w.window_size.as_str()
        )));
    }
    if !(2000..=9999).contains(&w.window_start.year()) {
        return Err(WorkerError::out_of_range(format_args!(
            "window_start {} is outside the years 2000-9999",
            w.window_start
        )));
    }
    if w.impressions < 0 || w.clicks < 0 || w.conversions < 0 {
        return Err(WorkerError::out_of_range("counts must be non-negative"));
    }
    if w.impressions > MAX_WINDOW_COUNT {
        return Err(WorkerError::out_of_range(format_args!(
            "impressions {} exceed {MAX_WINDOW_COUNT} in one window",
            w.impressions
        )));
    }
    if w.clicks > w.impressions {
        return Err(WorkerError::inconsistent(format_args!(
            "clicks {} exceed impressions {}",
            w.clicks, w.impressions
        )));
    }
    if w.conversions > w.clicks {
        return Err(WorkerError::inconsistent(format_args!(
            "conversions {} exceed clicks {}",
            w.conversions, w.clicks
        )));
    }
    if !w.cost.is_finite() || w.cost < 0.0 || w.cost > 1e12 {
        return Err(WorkerError::out_of_range(format_args!(
            "cost {} is not a valid amount",
            w.cost
        )));
    }
    Ok(MetricWindow {
        campaign_id: w.campaign_id,
        advertiser_id: w.advertiser_id,
        window_size: w.window_size,
        window_start: w.window_start,
        window_date: kst_date(w.window_start),
        impressions: w.impressions,
        clicks: w.clicks,
        conversions: w.conversions,
        cost_micros: (w.cost * 1e6).round() as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"campaign_id": 7, "advertiser_id": 3, "window_size": "5m",
        "window_start": "2026-11-20T15:05:00Z", "impressions": 1000, "clicks": 40,
        "conversions": 4, "cost": 12.345678}"#;

    #[test]
    fn counts_and_times_the_database_cannot_sum_or_hold_are_refused() {
        let huge = GOOD.replace("\"impressions\": 1000", "\"impressions\": 1000000000000000");
        assert!(reason(&huge).contains("exceed"), "{}", reason(&huge));
        let ancient = GOOD.replace("2026-11-20T15:05:00Z", "1900-01-01T00:05:00Z");
        assert!(
            reason(&ancient).contains("2000-9999"),
            "{}",
            reason(&ancient)
        );
    }

    fn reason(body: &str) -> String {
        match parse_window(body.as_bytes()) {
            Err(WorkerError::Rejected(rejection)) => rejection.reason().to_owned(),
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_window_gets_its_seoul_date_and_exact_cost() {
        let w = parse_window(GOOD.as_bytes()).expect("valid");
        // 15:05 UTC is 00:05 the next day in Seoul.
        assert_eq!(
            w.window_date,
            NaiveDate::from_ymd_opt(2026, 11, 21).expect("date")
        );
        assert_eq!(w.cost_micros, 12_345_678);
        assert_eq!(w.window_size.as_str(), "5m");
    }

    #[test]
    fn every_rule_rejects_with_a_reason() {
        assert!(reason(&GOOD.replace("\"5m\"", "\"2m\"")).contains("unknown variant"));
        assert!(reason(&GOOD.replace("15:05:00", "15:06:00")).contains("not aligned to 5m"));
        assert!(
            reason(&GOOD.replace("\"clicks\": 40", "\"clicks\": 4000"))
                .contains("exceed impressions")
        );
        assert!(
            reason(&GOOD.replace("\"conversions\": 4", "\"conversions\": 41"))
                .contains("exceed clicks")
        );
        assert!(reason(&GOOD.replace("1000", "-1")).contains("non-negative"));
        assert!(reason(&GOOD.replace("12.345678", "-0.5")).contains("not a valid amount"));
        assert!(reason(&GOOD.replace("\"campaign_id\": 7, ", "")).contains("missing field"));
        assert!(reason("{").starts_with("malformed JSON"));
    }
}

/// Properties of [`parse_window`] over arbitrary input: it never panics, refuses with a
/// permanent, storable reason, and accepts only windows `performance_metrics` holds and a month
/// of which sums inside a `bigint`.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::text::properties::{parser_properties, refused};

    const SAMPLE: &str = r#"{"campaign_id": 7, "advertiser_id": 3, "window_size": "5m",
        "window_start": "2026-11-20T15:05:00Z", "impressions": 1000, "clicks": 40,
        "conversions": 4, "cost": 12.345678}"#;

    fn check(value: &[u8]) -> Result<(), TestCaseError> {
        let w = match parse_window(value) {
            Ok(w) => w,
            Err(err) => return refused(&err),
        };
        prop_assert!(w.campaign_id > 0 && w.advertiser_id > 0);
        prop_assert!(0 <= w.conversions && w.conversions <= w.clicks);
        prop_assert!(w.clicks <= w.impressions && w.impressions <= MAX_WINDOW_COUNT);
        prop_assert!((0..=1_000_000_000_000_000_000).contains(&w.cost_micros));
        prop_assert!((2000..=9999).contains(&w.window_start.year()));
        prop_assert_eq!(w.window_start.timestamp() % w.window_size.seconds(), 0);
        prop_assert_eq!(w.window_date, kst_date(w.window_start));
        // A month of one-minute windows still sums inside a bigint.
        prop_assert!(w.impressions.checked_mul(31 * 24 * 60).is_some());
        Ok(())
    }

    #[test]
    fn the_sample_is_valid() {
        assert!(parse_window(SAMPLE.as_bytes()).is_ok());
    }

    parser_properties!(SAMPLE, |value: &[u8], _at| check(value));
}
