//! The admin API's rules (functions/admin-api): who may do what, how lists are paged, what a
//! job execution sends, when a backfill should finish, and what makes two mutations the same.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::WorkerError;

/// The scope that lets an operator read everything the API shows.
pub const READ_SCOPE: &str = "ops:read";
/// The scope that also lets an operator trigger, retry, (de)activate, execute and redrive.
pub const ADMIN_SCOPE: &str = "ops:admin";

/// What a caller may do, from the scopes of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Admin,
}

impl Role {
    /// The strongest role `scopes` grant; `None` when they grant none (the caller is refused).
    pub fn from_scopes<S: AsRef<str>>(scopes: &[S]) -> Option<Self> {
        let has = |wanted: &str| scopes.iter().any(|s| s.as_ref() == wanted);
        if has(ADMIN_SCOPE) {
            Some(Self::Admin)
        } else if has(READ_SCOPE) {
            Some(Self::Reader)
        } else {
            None
        }
    }
}

/// Rows a page holds unless the client asks for fewer or more.
pub const DEFAULT_PAGE: u32 = 50;
/// Rows a page holds at most.
pub const MAX_PAGE: u32 = 200;

/// The page size a client asked for, within `1..=MAX_PAGE`.
pub fn page_size(limit: Option<u32>) -> Result<u32, WorkerError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n @ 1..=MAX_PAGE) => Ok(n),
        Some(n) => Err(WorkerError::out_of_range(format_args!(
            "limit {n} is not between 1 and {MAX_PAGE}"
        ))),
    }
}

/// Where the next page starts: the last row's sort key, opaque to the client (hex of its JSON).
pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    hex::encode(serde_json::to_vec(key).unwrap_or_default())
}

/// Reads a cursor this list wrote (its sort key's type `K`); anything else is refused, never
/// guessed at.
pub fn decode_cursor<K: DeserializeOwned>(text: &str) -> Result<K, WorkerError> {
    let refused = || WorkerError::malformed("cursor is not one this list wrote");
    if text.len() > 1024 {
        return Err(refused());
    }
    let bytes = hex::decode(text).map_err(|_| refused())?;
    serde_json::from_slice(&bytes).map_err(|_| refused())
}

/// One page of a list: its rows (fetched one more than `limit`, to know whether more follow)
/// and the cursor of the next page, from the last row kept.
pub fn page<T, K: Serialize>(
    mut rows: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(|row| encode_cursor(&key(row)));
    (rows, next)
}

/// An idempotency key as the client sends it (`Idempotency-Key`): 1 to 255 visible ASCII
/// characters.
pub fn idempotency_key(header: Option<&str>) -> Result<&str, WorkerError> {
    let key = header.ok_or_else(|| {
        WorkerError::malformed("the Idempotency-Key header is required on every change")
    })?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WorkerError::malformed(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(key)
}

/// What makes a repeat the same request: the operation, its target and its body.
pub fn fingerprint(action: &str, target: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [action.as_bytes(), target.as_bytes(), body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// A job operators may execute: its name in `job_runs`, the function that runs it and what its
/// input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    pub name: &'static str,
    pub function: &'static str,
    /// When the schedule runs it (Asia/Seoul).
    pub schedule: &'static str,
    pub input: JobInputKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobInputKind {
    /// `{"date"}` (a finished day; yesterday without one).
    Date,
    /// `{"date", "dry_run"}`.
    DateAndDryRun,
    /// The CDP orchestrator's `{"task"}`: no date, it works on the state as it is.
    Task(&'static str),
}

/// Every scheduled job, as the schedules in template.yaml run them.
pub const JOBS: &[JobSpec] = &[
    JobSpec {
        name: "daily-rollup",
        function: "daily-rollup",
        schedule: "cron(0 2 * * ? *)",
        input: JobInputKind::Date,
    },
    JobSpec {
        name: "budget-settlement",
        function: "budget-settlement",
        schedule: "cron(0 3 * * ? *)",
        input: JobInputKind::Date,
    },
    JobSpec {
        name: "retention",
        function: "retention",
        schedule: "cron(0 4 * * ? *)",
        input: JobInputKind::DateAndDryRun,
    },
    JobSpec {
        name: "cdp-orchestrator",
        function: "cdp-orchestrator",
        schedule: "cron(0/5 * * * ? *)",
        input: JobInputKind::Task("tick"),
    },
    JobSpec {
        name: "cdp-stale-cleanup",
        function: "cdp-orchestrator",
        schedule: "cron(2/10 * * * ? *)",
        input: JobInputKind::Task("clean_up"),
    },
    JobSpec {
        name: "daily-collection",
        function: "daily-collection",
        schedule: "cron(0 2 * * ? *)",
        input: JobInputKind::DateAndDryRun,
    },
    JobSpec {
        name: "recommendations",
        function: "recommendations",
        schedule: "cron(30 2 * * ? *)",
        input: JobInputKind::DateAndDryRun,
    },
    JobSpec {
        name: "weekly-analysis",
        function: "weekly-analysis",
        schedule: "cron(0 3 ? * MON *)",
        input: JobInputKind::DateAndDryRun,
    },
    JobSpec {
        name: "monthly-report",
        function: "monthly-report",
        schedule: "cron(0 4 1 * ? *)",
        input: JobInputKind::DateAndDryRun,
    },
];

/// The job named `name`.
pub fn job(name: &str) -> Option<&'static JobSpec> {
    JOBS.iter().find(|job| job.name == name)
}

/// What an operator asks a job to run on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Execution {
    pub date: Option<NaiveDate>,
    pub dry_run: bool,
}

/// The input `job` is invoked with for `execution`: the schedule's own, with the execution's
/// id. What the job cannot take is refused here, before anything is invoked; the job checks the
/// date itself (a finished day in Asia/Seoul).
pub fn execution_input(
    job: &JobSpec,
    execution: &Execution,
    execution_id: uuid::Uuid,
) -> Result<Value, WorkerError> {
    match job.input {
        JobInputKind::Task(task) => {
            if execution.date.is_some() || execution.dry_run {
                return Err(WorkerError::malformed(format_args!(
                    "{} takes neither a date nor dry_run",
                    job.name
                )));
            }
            Ok(json!({ "task": task, "execution_id": execution_id }))
        }
        JobInputKind::Date | JobInputKind::DateAndDryRun => {
            if execution.dry_run && job.input == JobInputKind::Date {
                return Err(WorkerError::malformed(format_args!(
                    "{} has no dry run",
                    job.name
                )));
            }
            let mut input = json!({ "execution_id": execution_id });
            if let Some(date) = execution.date {
                input["date"] = json!(date);
            }
            if execution.dry_run {
                input["dry_run"] = json!(true);
            }
            Ok(input)
        }
    }
}

/// Consumers whose dead letters go to a topic of their own (their `DEAD_LETTER_TOPIC` in
/// template.yaml); every other consumer's go to `<source topic>-dlq`.
pub const DEDICATED_DEAD_LETTER_TOPICS: &[(&str, &str)] = &[("coupon-issue", "coupon-issue-dlq")];

/// The dead-letter topics `consumer` wrote the records of `topics` to, each once, sorted.
pub fn dead_letter_topics(consumer: &str, topics: &[String]) -> Vec<String> {
    if let Some((_, dlq)) = DEDICATED_DEAD_LETTER_TOPICS
        .iter()
        .find(|(name, _)| *name == consumer)
    {
        return vec![(*dlq).to_owned()];
    }
    let mut dlqs: Vec<String> = topics.iter().map(|topic| format!("{topic}-dlq")).collect();
    dlqs.sort();
    dlqs.dedup();
    dlqs
}

/// When an advertiser's `remaining` months should be done, from the times its recent months
/// completed (any order): the pace between the first and the last, `None` without two of them
/// or with nothing left to do.
pub fn eta(
    remaining: u32,
    recent_completions: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if remaining == 0 || recent_completions.len() < 2 {
        return None;
    }
    let first = recent_completions.iter().min()?;
    let last = recent_completions.iter().max()?;
    let intervals = i32::try_from(recent_completions.len() - 1).ok()?;
    let per_month = (*last - *first) / intervals;
    let remaining = i32::try_from(remaining).ok()?;
    Some(now + per_month * remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_scopes_and_admin_includes_reading() {
        assert_eq!(Role::from_scopes(&["ops:read"]), Some(Role::Reader));
        assert_eq!(
            Role::from_scopes(&["ops:read", "ops:admin"]),
            Some(Role::Admin)
        );
        assert_eq!(Role::from_scopes(&["alerts:write"]), None);
        assert_eq!(Role::from_scopes::<&str>(&[]), None);
        assert!(Role::Admin > Role::Reader);
    }

    #[test]
    fn cursors_round_trip_and_nothing_else_decodes() {
        let key = ("2026-11-20".to_owned(), 7_i64);
        assert_eq!(
            decode_cursor::<(String, i64)>(&encode_cursor(&key)).expect("round trip"),
            key
        );
        assert_eq!(
            decode_cursor::<i64>(&encode_cursor(&42_i64)).expect("id"),
            42
        );
        for bad in ["", "zz", "7b7d", &"a".repeat(2000), "' OR 1=1 --"] {
            assert!(decode_cursor::<i64>(bad).is_err(), "{bad}");
        }
        assert!(decode_cursor::<i64>(&encode_cursor(&"text")).is_err());
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        let (rows, next) = page(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(rows, [1, 2]);
        assert_eq!(next, Some(encode_cursor(&2)));
        let (rows, next) = page(vec![1, 2], 2, |n| *n);
        assert_eq!((rows.len(), next), (2, None));
        assert_eq!(page_size(None).expect("default"), DEFAULT_PAGE);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(MAX_PAGE + 1)).is_err());
    }

    #[test]
    fn idempotency_keys_are_required_and_bounded() {
        assert_eq!(idempotency_key(Some("a-1")).expect("key"), "a-1");
        for bad in [None, Some(""), Some("has space"), Some("é")] {
            assert!(idempotency_key(bad).is_err(), "{bad:?}");
        }
        let long = "k".repeat(256);
        assert!(idempotency_key(Some(&long)).is_err());
        assert_ne!(fingerprint("a", "bc", b""), fingerprint("ab", "c", b""));
        assert_eq!(fingerprint("a", "b", b"{}"), fingerprint("a", "b", b"{}"));
    }

    #[test]
    fn an_execution_sends_what_the_schedule_sends() {
        let id = uuid::Uuid::nil();
        let rollup = job("daily-rollup").expect("job");
        let day: NaiveDate = "2026-11-20".parse().expect("date");
        let with_date = Execution {
            date: Some(day),
            dry_run: false,
        };
        assert_eq!(
            execution_input(rollup, &with_date, id).expect("input"),
            json!({"date": "2026-11-20", "execution_id": id})
        );
        let dry = Execution {
            date: None,
            dry_run: true,
        };
        assert!(execution_input(rollup, &dry, id).is_err());
        assert_eq!(
            execution_input(job("retention").expect("job"), &dry, id).expect("input"),
            json!({"dry_run": true, "execution_id": id})
        );
        let clean_up = job("cdp-stale-cleanup").expect("job");
        assert_eq!(
            execution_input(clean_up, &Execution::default(), id).expect("input"),
            json!({"task": "clean_up", "execution_id": id})
        );
        assert!(execution_input(clean_up, &with_date, id).is_err());
        assert_eq!(job("nope"), None);
    }

    #[test]
    fn dead_letters_go_back_from_the_topic_they_went_to() {
        let topics = ["b".to_owned(), "a".to_owned(), "a".to_owned()];
        assert_eq!(
            dead_letter_topics("budget-sync", &topics),
            ["a-dlq", "b-dlq"]
        );
        assert_eq!(
            dead_letter_topics("coupon-issue", &topics),
            ["coupon-issue-dlq"]
        );
    }

    #[test]
    fn the_eta_follows_the_recent_pace() {
        let at = |m: i64| DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::minutes(m);
        let now = at(100);
        assert_eq!(eta(4, &[at(90), at(80), at(70)], now), Some(at(140)));
        assert_eq!(eta(0, &[at(90), at(80)], now), None);
        assert_eq!(eta(3, &[at(90)], now), None);
    }
}
