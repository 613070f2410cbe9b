//! Daily rollup (SPEC §3): the check of a campaign's rolled-up day against its raw events.
//! The rollup itself is set-based SQL; deciding what needs a person's review, which days can be
//! checked, which partitions to keep ready and how a review item reads are these rules.

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Value, json};

use crate::calendar::{add_months, kst_day_start, month_of, sub_days};
use crate::retention::Cutoffs;

/// Raw-event partitions kept ready this many months past the current one.
pub const PARTITIONS_AHEAD: u32 = 3;

/// A rolled-up day that differs from the raw events by this much or more opens a review item.
pub const REVIEW_THRESHOLD: f64 = 0.05;

/// A campaign's totals for one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub impressions: i64,
    pub clicks: i64,
    pub conversions: i64,
    pub cost_micros: i64,
}

impl Totals {
    fn metrics(&self) -> [(&'static str, i64); 4] {
        [
            ("impressions", self.impressions),
            ("clicks", self.clicks),
            ("conversions", self.conversions),
            ("cost_micros", self.cost_micros),
        ]
    }
}

/// The metric that differs most, when it differs enough to be reviewed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub metric: &'static str,
    pub rolled_up: i64,
    pub raw: i64,
    pub ratio: f64,
}

/// |rolled_up − raw| / raw, the raw events being the truth. Something where the raw events
/// have nothing counts as a 100 % difference.
pub fn difference_ratio(rolled_up: i64, raw: i64) -> f64 {
    if raw == 0 {
        return if rolled_up == 0 { 0.0 } else { 1.0 };
    }
    rolled_up.abs_diff(raw) as f64 / raw.unsigned_abs() as f64
}

/// The largest difference between the two sides, if it reaches [`REVIEW_THRESHOLD`].
pub fn needs_review(rolled_up: &Totals, raw: &Totals) -> Option<Difference> {
    rolled_up
        .metrics()
        .into_iter()
        .zip(raw.metrics())
        .map(|((metric, rolled_up), (_, raw))| Difference {
            metric,
            rolled_up,
            raw,
            ratio: difference_ratio(rolled_up, raw),
        })
        .filter(|d| d.ratio >= REVIEW_THRESHOLD)
        // On a tie the first metric in the list (impressions, clicks, ...) is the one named.
        .reduce(|best, d| if d.ratio > best.ratio { d } else { best })
}

/// Whether `day`'s raw events are still kept on `today` (KST), so its rollup can be checked
/// against them: retention deletes them after 90 days.
pub fn raw_events_kept(day: NaiveDate, today: NaiveDate) -> bool {
    kst_day_start(day) >= Cutoffs::for_target(sub_days(today, 1)).raw_events
}

/// The months whose raw-event partitions a rollup of `day` makes sure exist, first and last:
/// from the current month (re-running an old day must not recreate what retention dropped) to
/// [`PARTITIONS_AHEAD`] months past the later of today and the day.
pub fn partitions_to_ensure(day: NaiveDate, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    (
        month_of(today),
        add_months(month_of(today.max(day)), PARTITIONS_AHEAD),
    )
}

/// A review item as stored (`rollup_reviews`).
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub stat_date: NaiveDate,
    pub campaign_id: i64,
    pub advertiser_id: i64,
    pub metric: String,
    pub rolled_up: i64,
    pub raw: i64,
    pub difference_ratio: f64,
}

impl Review {
    /// How the item reads in the operators' summary: the difference as a percentage with one
    /// decimal.
    pub fn summary_item(&self) -> Value {
        json!({
            "date": self.stat_date,
            "campaign_id": self.campaign_id,
            "advertiser_id": self.advertiser_id,
            "metric": self.metric,
            "rolled_up": self.rolled_up,
            "raw": self.raw,
            "difference_pct": (self.difference_ratio * 1000.0).round() / 10.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("date")
    }

    #[test]
    fn a_day_is_checked_while_its_raw_events_are_kept() {
        let today = date("2026-11-23");
        assert!(raw_events_kept(date("2026-11-22"), today));
        // Retention run for yesterday keeps 90 days back from today.
        assert!(raw_events_kept(date("2026-08-25"), today));
        assert!(!raw_events_kept(date("2026-08-24"), today));
    }

    #[test]
    fn partitions_run_from_this_month_to_three_past_the_later_month() {
        let today = date("2026-11-23");
        assert_eq!(
            partitions_to_ensure(date("2026-11-22"), today),
            (date("2026-11-01"), date("2027-02-01"))
        );
        // An old day recreates nothing before this month.
        assert_eq!(
            partitions_to_ensure(date("2025-01-15"), today),
            (date("2026-11-01"), date("2027-02-01"))
        );
        // A day ahead of today (a backfill of a future-dated day) reaches further.
        assert_eq!(
            partitions_to_ensure(date("2027-01-05"), today),
            (date("2026-11-01"), date("2027-04-01"))
        );
    }

    #[test]
    fn a_review_item_reads_as_a_percentage_with_one_decimal() {
        let review = Review {
            stat_date: date("2026-11-22"),
            campaign_id: 7,
            advertiser_id: 3,
            metric: "clicks".to_owned(),
            rolled_up: 95,
            raw: 100,
            difference_ratio: 0.05263,
        };
        let item = review.summary_item();
        assert_eq!(item["difference_pct"], json!(5.3));
        assert_eq!(item["date"], json!("2026-11-22"));
        assert_eq!(item["metric"], json!("clicks"));
    }

    fn totals(impressions: i64, clicks: i64, conversions: i64, cost_micros: i64) -> Totals {
        Totals {
            impressions,
            clicks,
            conversions,
            cost_micros,
        }
    }

    #[test]
    fn five_percent_exactly_is_reviewed_and_just_under_is_not() {
        let raw = totals(1000, 100, 10, 1_000_000);
        assert_eq!(needs_review(&totals(1049, 100, 10, 1_000_000), &raw), None);
        let review = needs_review(&totals(950, 100, 10, 1_000_000), &raw).expect("5 %");
        assert_eq!(review.metric, "impressions");
        assert!((review.ratio - 0.05).abs() < 1e-12);
    }

    #[test]
    fn the_largest_difference_is_the_one_reported() {
        let raw = totals(1000, 100, 10, 1_000_000);
        let review = needs_review(&totals(1100, 100, 5, 1_000_000), &raw).expect("review");
        assert_eq!(
            review,
            Difference {
                metric: "conversions",
                rolled_up: 5,
                raw: 10,
                ratio: 0.5
            }
        );
    }

    #[test]
    fn one_side_missing_is_a_full_difference() {
        let nothing = Totals::default();
        assert_eq!(needs_review(&nothing, &nothing), None);
        let review = needs_review(&totals(10, 0, 0, 0), &nothing).expect("no raw events");
        assert_eq!(review.ratio, 1.0);
        let review = needs_review(&nothing, &totals(10, 1, 0, 5)).expect("no rollup");
        assert_eq!((review.metric, review.ratio), ("impressions", 1.0));
    }
}
