//! Daily rollup (SPEC §3): the check of a campaign's rolled-up day against its raw events.
//! The rollup itself is set-based SQL; deciding what needs a person's review is this rule.

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
