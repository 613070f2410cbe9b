//! Scheduled jobs (SPEC §3): what a job's input means, and the Asia/Seoul calendar they work on.
//!
//! EventBridge Scheduler passes `{"scheduled_time": "<aws.scheduler.scheduled-time>"}`; an
//! operator re-running a day passes `{"date": "2026-11-20"}`. The target date is the given date,
//! or the day before the scheduled time's day in Asia/Seoul (the job at 02:00 KST on the 21st
//! works on the 20th). The scheduled time, not the clock, decides it: a retry hours later, or
//! after midnight, still works on the same day.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::WorkerError;
use crate::calendar::kst_date;

/// Reads a scheduled function's input (`what` names it in errors; `expected` shows its form).
/// `null` (a console test event) is the default input; anything but a JSON object is refused:
/// serde would read a struct from an array by position, so `[]` would run the default.
pub fn parse_input<T: DeserializeOwned + Default>(
    payload: serde_json::Value,
    what: &str,
    expected: &str,
) -> Result<T, WorkerError> {
    if payload.is_null() {
        return Ok(T::default());
    }
    if !payload.is_object() {
        return Err(WorkerError::malformed(format_args!(
            "{what} must be a JSON object or null"
        )));
    }
    serde_json::from_value(payload)
        .map_err(|err| WorkerError::malformed(format_args!("{what}: {err} (expected {expected})")))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    /// The day to work on, as an operator gives it.
    #[serde(default)]
    pub date: Option<NaiveDate>,
    /// When the schedule fired (EventBridge Scheduler's context attribute).
    #[serde(default)]
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Report what would be done without doing it (retention only).
    #[serde(default)]
    pub dry_run: bool,
    /// The admin API's execution this run is for (`POST /jobs/{job}/executions`): the run
    /// is recorded under it, so the operator who asked can find it.
    #[serde(default)]
    pub execution_id: Option<uuid::Uuid>,
}

impl JobInput {
    /// Parses the invocation payload. `null` or `{}` (a console test event) means "yesterday".
    /// An unknown field is refused: a mistyped `"data"` must not silently run yesterday.
    pub fn parse(payload: serde_json::Value) -> Result<Self, WorkerError> {
        parse_input(
            payload,
            "job input",
            r#"{"date": "YYYY-MM-DD"}, {"scheduled_time": "RFC 3339"}, {"dry_run": true} and/or {"execution_id": "UUID"}"#,
        )
    }

    /// The day the job works on: the given date, or the day before the scheduled time's (or,
    /// with neither, `now`'s) day in Asia/Seoul. Only finished days: a date that is today or
    /// later in Asia/Seoul, or a scheduled time ahead of `now` by more than the clock skew, is
    /// refused, since a job run on them would delete live data (retention), create partitions
    /// and reports for days that have not happened (rollup, settlement).
    pub fn target_date(&self, now: DateTime<Utc>) -> Result<NaiveDate, WorkerError> {
        if let Some(fired) = self.scheduled_time
            && fired > now + CLOCK_SKEW
        {
            return Err(WorkerError::out_of_range(format_args!(
                "job input: scheduled_time {fired} is in the future (now {now})"
            )));
        }
        let day = self.date.unwrap_or_else(|| {
            let fired = self.scheduled_time.unwrap_or(now);
            kst_date(fired).pred_opt().unwrap_or(NaiveDate::MIN)
        });
        let today = kst_date(now);
        if day < FIRST_DAY {
            return Err(WorkerError::out_of_range(format_args!(
                "job input: {day} is before {FIRST_DAY}, older than any data of ours"
            )));
        }
        if day >= today {
            return Err(WorkerError::out_of_range(format_args!(
                "job input: {day} is not a finished day (today in Asia/Seoul is {today})"
            )));
        }
        Ok(day)
    }
}

/// No job works on a day before this one.
pub const FIRST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date");
/// How far ahead of this function's clock a scheduler's may be.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    #[test]
    fn the_scheduled_run_works_on_yesterday_in_seoul() {
        // 02:00 KST on the 21st is 17:00 UTC on the 20th.
        let input = JobInput::parse(json!({"scheduled_time": "2026-11-20T17:00:00Z"}))
            .expect("valid input");
        let now = "2026-11-23T00:00:00Z".parse().expect("instant");
        assert_eq!(
            input.target_date(now).expect("a finished day"),
            day("2026-11-20")
        );
        // 14:59 UTC is still the 20th in Seoul... and 15:00 is the 21st.
        let late = JobInput::parse(json!({"scheduled_time": "2026-11-20T14:59:59Z"}))
            .expect("valid input");
        assert_eq!(
            late.target_date(now).expect("a finished day"),
            day("2026-11-19")
        );
        let midnight = JobInput::parse(json!({"scheduled_time": "2026-11-20T15:00:00Z"}))
            .expect("valid input");
        assert_eq!(
            midnight.target_date(now).expect("a finished day"),
            day("2026-11-20")
        );
    }

    #[test]
    fn an_explicit_date_wins_and_empty_input_means_yesterday() {
        let input = JobInput::parse(
            json!({"date": "2026-01-31", "scheduled_time": "2026-11-20T17:00:00Z"}),
        )
        .expect("valid input");
        assert_eq!(
            input.target_date(Utc::now()).expect("a finished day"),
            day("2026-01-31")
        );
        let now = "2026-03-01T00:30:00+09:00"
            .parse::<DateTime<Utc>>()
            .expect("instant");
        for empty in [json!(null), json!({})] {
            let input = JobInput::parse(empty).expect("valid input");
            assert_eq!(
                input.target_date(now).expect("a finished day"),
                day("2026-02-28")
            );
            assert!(!input.dry_run);
        }
    }

    #[test]
    fn mistyped_or_malformed_input_is_refused_with_its_reason() {
        let err = JobInput::parse(json!({"data": "2026-11-20"})).expect_err("unknown field");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("unknown field `data`"), "{err}");
        let err = JobInput::parse(json!({"date": "2026-13-01"})).expect_err("bad date");
        assert!(err.to_string().contains("job input"), "{err}");
        assert!(JobInput::parse(json!([1])).is_err());
        assert!(
            JobInput::parse(json!([])).is_err(),
            "an empty array is not yesterday"
        );
        assert!(JobInput::parse(json!("2026-11-20")).is_err());
        let ancient = JobInput::parse(json!({"date": "1999-12-31"})).expect("well-formed");
        let now = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc);
        assert!(ancient.target_date(now).is_err());
    }

    #[test]
    fn the_sample_events_name_the_20th_of_november() {
        // The files `cargo lambda invoke`, `sam local invoke` and the e2e run send.
        let samples = [
            include_str!("../../../events/daily-rollup.json"),
            include_str!("../../../events/daily-rollup-date.json"),
            include_str!("../../../events/budget-settlement.json"),
            include_str!("../../../events/budget-settlement-date.json"),
            include_str!("../../../events/retention.json"),
            include_str!("../../../events/retention-date.json"),
            include_str!("../../../events/retention-dry-run.json"),
        ];
        for sample in samples {
            let payload = serde_json::from_str(sample).expect("JSON");
            let input = JobInput::parse(payload).expect("a valid job input");
            assert_eq!(
                input.target_date(Utc::now()).expect("a finished day"),
                day("2026-11-20"),
                "{sample}"
            );
        }
    }

    #[test]
    fn only_finished_days_are_worked_on() {
        let now: DateTime<Utc> = "2026-11-23T01:00:00Z".parse().expect("instant"); // 10:00 KST
        for (payload, refused) in [
            (json!({"date": "2026-11-22"}), false),
            (json!({"date": "2026-11-23"}), true),
            (json!({"date": "2036-11-20"}), true),
            (json!({"scheduled_time": "2026-11-22T17:00:00Z"}), false), // 02:00 KST today
            (json!({"scheduled_time": "2026-11-23T01:04:00Z"}), false), // within the skew
            (json!({"scheduled_time": "2026-11-23T02:00:00Z"}), true),
            (
                json!({"scheduled_time": "2099-01-01T00:00:00Z", "date": "2026-11-20"}),
                true,
            ),
        ] {
            let input = JobInput::parse(payload.clone()).expect("well-formed input");
            let result = input.target_date(now);
            assert_eq!(result.is_err(), refused, "{payload}: {result:?}");
            if let Err(err) = result {
                assert!(!err.is_retryable(), "{err}");
            }
        }
    }
}

/// Properties of [`JobInput`] over arbitrary payloads and clocks: parsing never panics; a
/// payload is refused (permanently, with a storable reason) or names a finished Asia/Seoul day,
/// strictly before today, that PostgreSQL's `date` holds.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use serde_json::Value;

    use super::*;
    use crate::text::properties::{
        almost_valid, bytes, config, json, postgres_holds_date, refused,
    };

    const SAMPLE: &str =
        r#"{"date": "2026-11-20", "scheduled_time": "2026-11-20T17:00:00Z", "dry_run": true}"#;

    /// The function's clock: now, or any time from 2000 to 2100 (a clock is not input).
    fn now() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            1 => Just(Utc::now()),
            1 => (946_684_800_i64..4_102_444_800).prop_filter_map("an instant", |s| {
                DateTime::<Utc>::from_timestamp(s, 0)
            }),
        ]
    }

    fn check(payload: Value, now: DateTime<Utc>) -> Result<(), TestCaseError> {
        let input = match JobInput::parse(payload.clone()) {
            Ok(input) => input,
            Err(err) => return refused(&err),
        };
        // Like records, an input is an object (or nothing): serde would read a struct from an
        // array by position, so `["2026-11-20", null, true]` would name a day and a dry run.
        prop_assert!(
            payload.is_null() || payload.is_object(),
            "{payload} is not an object but was taken for {input:?}"
        );
        let day = match input.target_date(now) {
            Ok(day) => day,
            Err(err) => return refused(&err),
        };
        prop_assert!(day < kst_date(now), "{day} is not before today in Seoul");
        prop_assert!(
            postgres_holds_date(day),
            "{day} is outside PostgreSQL's date (job_runs.target_date)"
        );
        if let Some(given) = input.date {
            prop_assert_eq!(day, given);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_are_a_day_or_refused(payload in bytes(), now in now()) {
            // The runtime hands the function JSON; bytes that are not JSON never reach it.
            if let Ok(payload) = serde_json::from_slice::<Value>(&payload) {
                check(payload, now)?;
            }
        }

        #[test]
        fn arbitrary_json_is_a_day_or_refused(payload in json(), now in now()) {
            check(payload, now)?;
        }

        #[test]
        fn an_input_with_a_field_changed_is_a_day_or_refused(
            payload in almost_valid(SAMPLE),
            now in now(),
        ) {
            if let Ok(payload) = serde_json::from_slice::<Value>(&payload) {
                check(payload, now)?;
            }
        }
    }
}
