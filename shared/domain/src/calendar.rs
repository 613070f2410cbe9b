//! The Asia/Seoul calendar every rule counts days in: a day's start, its month, and day and
//! month arithmetic that saturates at the calendar's ends instead of panicking.

use chrono::{DateTime, Datelike as _, Days, FixedOffset, Months, NaiveDate, Utc};

/// Korea Standard Time has no daylight saving, so a fixed offset is exact. Checked at compile
/// time.
pub const KST: FixedOffset = match FixedOffset::east_opt(9 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+9 is a valid offset"),
};

/// The Asia/Seoul calendar day of an instant.
pub fn kst_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&KST).date_naive()
}

/// The instant an Asia/Seoul day starts.
pub fn kst_day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .checked_sub_signed(chrono::TimeDelta::hours(9))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The first day of the month a day is in.
pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// `day` plus `n` days, saturating at the calendar's ends.
pub fn add_days(day: NaiveDate, n: u64) -> NaiveDate {
    day.checked_add_days(Days::new(n)).unwrap_or(NaiveDate::MAX)
}

/// `day` minus `n` days, saturating at the calendar's ends.
pub fn sub_days(day: NaiveDate, n: u64) -> NaiveDate {
    day.checked_sub_days(Days::new(n)).unwrap_or(NaiveDate::MIN)
}

/// `day` minus `n` months (the 31st becomes the month's last day).
pub fn sub_months(day: NaiveDate, n: u32) -> NaiveDate {
    day.checked_sub_months(Months::new(n))
        .unwrap_or(NaiveDate::MIN)
}

/// `day` plus `n` months (the 31st becomes the month's last day).
pub fn add_months(day: NaiveDate, n: u32) -> NaiveDate {
    day.checked_add_months(Months::new(n))
        .unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    #[test]
    fn seoul_days_start_at_15_utc_the_day_before() {
        assert_eq!(
            kst_day_start(day("2026-11-21")),
            "2026-11-20T15:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("instant")
        );
        assert_eq!(month_of(day("2026-11-21")), day("2026-11-01"));
        assert_eq!(sub_months(day("2026-03-31"), 1), day("2026-02-28"));
        assert_eq!(add_months(day("2026-12-15"), 1), day("2027-01-15"));
        assert_eq!(sub_days(day("2026-03-01"), 1), day("2026-02-28"));
        assert_eq!(add_days(day("2026-02-28"), 1), day("2026-03-01"));
    }
}
