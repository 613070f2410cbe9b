//! EventBridge Scheduler's schedule expressions: `cron(…)`, `rate(…)` and `at(…)`, in the
//! schedule's time zone.
//!
//! Written here rather than taken from a cron crate: Scheduler's dialect has six fields with a
//! year and no seconds, `?` for "either day field", and days of the week numbered 1 (SUN) to 7
//! (SAT); the common crates read five- or seven-field Unix/Quartz expressions whose day
//! numbering and `?` rules differ, which is exactly where a schedule would silently fire on
//! the wrong day. `L`, `W` and `#` are refused with a message rather than guessed.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Tz;

/// A parsed schedule expression and its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub expression: String,
    pub zone: Tz,
    when: When,
}

#[derive(Debug, Clone, PartialEq)]
enum When {
    Cron(Box<Cron>),
    /// Every period, counted from when the emulator starts (Scheduler counts from the
    /// schedule's creation).
    Rate(Duration),
    /// Once, at this wall-clock time in the zone.
    At(NaiveDateTime),
}

/// The allowed values of each field, as sets.
#[derive(Debug, Clone, PartialEq)]
struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Option<Vec<bool>>,
    months: Vec<bool>,
    weekdays: Option<Vec<bool>>,
    years: Vec<bool>,
}

const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2199;
/// How far ahead a cron is searched before it counts as never firing again.
const HORIZON_DAYS: u32 = 366 * 5;
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    pub fn parse(expression: &str, zone: &str) -> anyhow::Result<Self> {
        let zone: Tz = zone
            .parse()
            .map_err(|err| anyhow::anyhow!("time zone {zone:?}: {err}"))?;
        let inner = |prefix: &str| {
            expression
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
                .map(str::trim)
        };
        let when = if let Some(body) = inner("cron(") {
            When::Cron(Box::new(Cron::parse(body)?))
        } else if let Some(body) = inner("rate(") {
            When::Rate(rate(body)?)
        } else if let Some(body) = inner("at(") {
            When::At(
                NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S")
                    .with_context(|| format!("at({body}): expected yyyy-mm-ddThh:mm:ss"))?,
            )
        } else {
            bail!("{expression:?}: expected cron(…), rate(…) or at(…)");
        };
        Ok(Self {
            expression: expression.to_owned(),
            zone,
            when,
        })
    }

    /// The first firing strictly after `after`; `started` is when a rate schedule began.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        started: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Cron(cron) => cron.next_after(after, self.zone),
            When::Rate(period) => {
                let period = chrono::Duration::from_std(*period).ok()?;
                let elapsed = after.signed_duration_since(started);
                let periods = elapsed.num_milliseconds() / period.num_milliseconds().max(1) + 1;
                Some(started + period * i32::try_from(periods.max(1)).ok()?)
            }
            When::At(at) => {
                let instant = self.zone.from_local_datetime(at).earliest()?;
                (instant > after).then(|| instant.with_timezone(&Utc))
            }
        }
    }
}

fn rate(body: &str) -> anyhow::Result<Duration> {
    let (value, unit) = body
        .split_once(' ')
        .with_context(|| format!("rate({body}): expected rate(value unit)"))?;
    let value: u64 = value
        .trim()
        .parse()
        .with_context(|| format!("rate({body}): {value:?} is not a whole number"))?;
    ensure!(value > 0, "rate({body}): the value must be positive");
    let unit = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3_600,
        "day" | "days" => 86_400,
        other => bail!("rate({body}): unit {other:?} is not minute(s), hour(s) or day(s)"),
    };
    Ok(Duration::from_secs(value * unit))
}

impl Cron {
    fn parse(body: &str) -> anyhow::Result<Self> {
        let fields: Vec<&str> = body.split_whitespace().collect();
        let [minutes, hours, days, months, weekdays, years] = fields[..] else {
            bail!(
                "cron({body}): expected six fields (minutes hours day-of-month month day-of-week year)"
            );
        };
        let either = |field: &str| field == "?";
        ensure!(
            either(days) != either(weekdays),
            "cron({body}): exactly one of day-of-month and day-of-week must be ?"
        );
        Ok(Self {
            minutes: field(minutes, 0, 59, &[])?,
            hours: field(hours, 0, 23, &[])?,
            days: (!either(days))
                .then(|| field(days, 1, 31, &[]))
                .transpose()?,
            months: field(months, 1, 12, &MONTHS)?,
            weekdays: (!either(weekdays))
                .then(|| field(weekdays, 1, 7, &WEEKDAYS))
                .transpose()?,
            years: field(years, FIRST_YEAR as u32, LAST_YEAR as u32, &[])?,
        })
    }

    fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&zone).date_naive();
        (0..HORIZON_DAYS)
            .filter_map(|offset| local.checked_add_days(chrono::Days::new(u64::from(offset))))
            .filter(|day| self.matches_day(*day))
            .find_map(|day| {
                self.times().find_map(|time| {
                    let instant = zone.from_local_datetime(&day.and_time(time)).earliest()?;
                    (instant > after).then(|| instant.with_timezone(&Utc))
                })
            })
    }

    fn matches_day(&self, day: NaiveDate) -> bool {
        let allowed = |set: &[bool], value: u32| set.get(value as usize).copied().unwrap_or(false);
        let year_ok = u32::try_from(day.year()).is_ok_and(|year| allowed(&self.years, year));
        let weekday = day.weekday().number_from_sunday();
        year_ok
            && allowed(&self.months, day.month())
            && self.days.as_deref().is_none_or(|d| allowed(d, day.day()))
            && self.weekdays.as_deref().is_none_or(|w| allowed(w, weekday))
    }

    fn times(&self) -> impl Iterator<Item = NaiveTime> + '_ {
        let set = |values: &'_ [bool]| {
            values
                .iter()
                .enumerate()
                .filter(|(_, on)| **on)
                .map(|(value, _)| value as u32)
                .collect::<Vec<_>>()
        };
        let (hours, minutes) = (set(&self.hours), set(&self.minutes));
        hours.into_iter().flat_map(move |hour| {
            minutes
                .clone()
                .into_iter()
                .filter_map(move |minute| NaiveTime::from_hms_opt(hour, minute, 0))
        })
    }
}

/// One field as the set of values it allows, indexed by value.
fn field(text: &str, low: u32, high: u32, names: &[&str]) -> anyhow::Result<Vec<bool>> {
    let mut allowed = vec![false; high as usize + 1];
    for part in text.split(',') {
        ensure!(
            !part.contains(['L', 'W', '#']) || names.iter().any(|n| part.contains(n)),
            "{part:?}: L, W and # are not supported locally"
        );
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                Some(
                    step.parse::<u32>()
                        .ok()
                        .filter(|s| *s > 0)
                        .with_context(|| format!("{part:?}: the step must be a positive number"))?,
                ),
            ),
            None => (part, None),
        };
        let value = |token: &str| -> anyhow::Result<u32> {
            let upper = token.to_ascii_uppercase();
            let number = match names.iter().position(|name| *name == upper) {
                Some(index) => index as u32 + 1,
                None => token
                    .parse()
                    .with_context(|| format!("{token:?} is not a number or a name"))?,
            };
            ensure!(
                (low..=high).contains(&number),
                "{token:?} is outside {low}-{high}"
            );
            Ok(number)
        };
        let (first, last) = match range {
            "*" => (low, high),
            _ => match range.split_once('-') {
                Some((first, last)) => (value(first)?, value(last)?),
                // `5/15` (and `5/1`) run from 5 to the field's end.
                None if step.is_some() => (value(range)?, high),
                None => {
                    let single = value(range)?;
                    (single, single)
                }
            },
        };
        ensure!(first <= last, "{part:?}: the range runs backwards");
        for allowed_value in (first..=last).step_by(step.unwrap_or(1) as usize) {
            allowed[allowed_value as usize] = true;
        }
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 time")
    }

    fn next(expression: &str, zone: &str, after: &str) -> Option<DateTime<Utc>> {
        let schedule = Schedule::parse(expression, zone).expect("a valid expression");
        schedule.next_after(utc(after), utc(after))
    }

    #[test]
    fn two_in_the_morning_in_seoul_is_five_in_the_afternoon_utc() {
        assert_eq!(
            next("cron(0 2 * * ? *)", "Asia/Seoul", "2026-11-20T16:59:59Z"),
            Some(utc("2026-11-20T17:00:00Z"))
        );
        // Exactly at the firing time, the next is a day later.
        assert_eq!(
            next("cron(0 2 * * ? *)", "Asia/Seoul", "2026-11-20T17:00:00Z"),
            Some(utc("2026-11-21T17:00:00Z"))
        );
    }

    #[test]
    fn weekdays_count_from_sunday_and_names_work() {
        // 2026-11-23 is a Monday. MON-FRI at 09:30 UTC.
        assert_eq!(
            next("cron(30 9 ? * MON-FRI *)", "UTC", "2026-11-21T00:00:00Z"),
            Some(utc("2026-11-23T09:30:00Z"))
        );
        // 1 is Sunday.
        assert_eq!(
            next("cron(0 0 ? * 1 *)", "UTC", "2026-11-23T00:00:00Z"),
            Some(utc("2026-11-29T00:00:00Z"))
        );
    }

    #[test]
    fn steps_lists_and_years() {
        assert_eq!(
            next("cron(0/15 * * * ? *)", "UTC", "2026-11-23T10:16:00Z"),
            Some(utc("2026-11-23T10:30:00Z"))
        );
        // A step of 1 runs to the field's end too.
        assert_eq!(
            next("cron(58/1 9 * * ? *)", "UTC", "2026-11-23T09:58:30Z"),
            Some(utc("2026-11-23T09:59:00Z"))
        );
        assert_eq!(
            next("cron(0 12 1,15 JAN ? 2027)", "UTC", "2026-11-23T00:00:00Z"),
            Some(utc("2027-01-01T12:00:00Z"))
        );
        assert_eq!(
            next("cron(0 12 1 JAN ? 2025)", "UTC", "2026-11-23T00:00:00Z"),
            None
        );
    }

    #[test]
    fn a_time_that_does_not_exist_in_the_zone_is_skipped() {
        // 2026-03-08 02:30 does not exist in New York (clocks go from 02:00 to 03:00).
        assert_eq!(
            next(
                "cron(30 2 * * ? *)",
                "America/New_York",
                "2026-03-08T05:00:00Z"
            ),
            Some(utc("2026-03-09T06:30:00Z"))
        );
    }

    #[test]
    fn rate_and_at() {
        let rate = Schedule::parse("rate(5 minutes)", "UTC").expect("rate");
        let started = utc("2026-11-23T10:00:00Z");
        assert_eq!(
            rate.next_after(utc("2026-11-23T10:07:00Z"), started),
            Some(utc("2026-11-23T10:10:00Z"))
        );
        assert_eq!(
            next(
                "at(2026-12-01T09:00:00)",
                "Asia/Seoul",
                "2026-11-23T00:00:00Z"
            ),
            Some(utc("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            next(
                "at(2026-12-01T09:00:00)",
                "Asia/Seoul",
                "2026-12-02T00:00:00Z"
            ),
            None
        );
    }

    #[test]
    fn what_scheduler_would_refuse_is_refused_with_its_reason() {
        for (expression, says) in [
            ("cron(0 2 * * * *)", "exactly one"),
            ("cron(0 2 ? * ? *)", "exactly one"),
            ("cron(0 2 * *)", "six fields"),
            ("cron(61 2 * * ? *)", "outside 0-59"),
            ("cron(0 2 L * ? *)", "not supported"),
            ("cron(0 2 ? * 2#1 *)", "not supported"),
            ("rate(0 hours)", "positive"),
            ("rate(2 weeks)", "unit"),
            ("every day", "expected cron"),
        ] {
            let err = Schedule::parse(expression, "UTC").expect_err(expression);
            assert!(format!("{err:#}").contains(says), "{expression}: {err:#}");
        }
        assert!(Schedule::parse("cron(0 2 * * ? *)", "Mars/Olympus").is_err());
    }
}
