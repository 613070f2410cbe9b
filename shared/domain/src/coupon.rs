//! Coupon issuance (SPEC §2, `coupon-issue-requests`): which request gets a coupon. Pure, so
//! every rule is tested without a database; the function feeds it the state it read under the
//! coupons' row locks and writes back what it decided.
//!
//! Rules, in the order they are checked for each request:
//! 1. a request id already decided keeps its outcome and has no new effect (a replay, a client
//!    retry, or the same record delivered to two invocations);
//! 2. ids must be positive and `requested_at` must not be later than the record's broker
//!    timestamp (plus clock skew), else `invalid`;
//! 3. the coupon must exist and be active (`invalid`), and `requested_at` must fall inside its
//!    window: before it is `invalid`, after it `expired`;
//! 4. a user holding the coupon already gets `duplicate`;
//! 5. otherwise the coupon is `issued` while stock lasts, then `sold_out`.
//!
//! Within a batch, requests are served in `requested_at` order (ties in partition and offset
//! order), so the last units of a hot coupon go to the earliest clicks, and the same batch
//! against the same state always decides the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Datelike as _, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::WorkerError;

/// Longest request id accepted; the id is a client's idempotency key, a UUID in practice.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// How far `requested_at` may run ahead of the broker's timestamp of the record.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// The message on `coupon-issue-requests`. Unknown fields are ignored, so producers can add
/// fields before the consumer knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    /// The client's idempotency key: the same id always gets the same outcome.
    pub request_id: String,
    pub coupon_id: i64,
    pub user_id: i64,
    /// When the user asked, stamped by the service that accepted the click.
    pub requested_at: DateTime<Utc>,
}

/// A record that is not a request at all: not JSON, a field missing or of the wrong type, or
/// no usable request id. It has nothing to answer for, so it goes to the dead-letter topic.
pub fn parse_request(value: &[u8]) -> Result<IssueRequest, WorkerError> {
    let request: IssueRequest = crate::text::json_object(value)?;
    let id = request.request_id.as_str();
    if id.trim().is_empty() {
        return Err(WorkerError::missing("request_id is empty"));
    }
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(WorkerError::out_of_range(format_args!(
            "request_id is {} bytes long, more than {MAX_REQUEST_ID_LEN}",
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(WorkerError::malformed(
            "request_id contains control characters",
        ));
    }
    // Outside these years a timestamp is a producer's bug, and PostgreSQL could not store it.
    if !(2000..=9999).contains(&request.requested_at.year()) {
        return Err(WorkerError::out_of_range(format_args!(
            "requested_at {} is not a plausible time",
            request.requested_at.to_rfc3339()
        )));
    }
    Ok(request)
}

/// A request with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub request: IssueRequest,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The broker's (or producer's) timestamp of the record.
    pub received_at: DateTime<Utc>,
}

/// What happened to a request. Sold out and duplicate are answers, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Issued,
    SoldOut,
    Duplicate,
    Invalid,
    Expired,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Self::Issued,
        Self::SoldOut,
        Self::Duplicate,
        Self::Invalid,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::SoldOut => "sold_out",
            Self::Duplicate => "duplicate",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A coupon as read under its row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub id: i64,
    pub active: bool,
    pub remaining: i64,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
}

/// What is already recorded for the batch's requests.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Outcome per request id already decided.
    pub outcomes: HashMap<String, Outcome>,
    /// (coupon, user) pairs already granted.
    pub grants: HashSet<(i64, i64)>,
}

/// One request's decision. `fresh` is false for a request id decided before (in the database
/// or earlier in the batch): it reports the recorded outcome and writes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub submitted: &'a Submitted,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub fresh: bool,
}

/// The batch's decisions, in serving order, and the stock each coupon gives up.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    pub decisions: Vec<Decision<'a>>,
    pub taken: BTreeMap<i64, i64>,
}

impl Plan<'_> {
    /// How many requests of the batch ended with each outcome (fresh or not).
    pub fn counts(&self) -> BTreeMap<Outcome, usize> {
        let mut counts = BTreeMap::new();
        for decision in &self.decisions {
            *counts.entry(decision.outcome).or_default() += 1;
        }
        counts
    }

    pub fn fresh(&self) -> impl Iterator<Item = &Decision<'_>> {
        self.decisions.iter().filter(|d| d.fresh)
    }
}

/// Decides every request of a batch against the coupons and what is already recorded.
pub fn decide<'a>(
    batch: &'a [Submitted],
    coupons: &HashMap<i64, Coupon>,
    recorded: &Recorded,
) -> Plan<'a> {
    let mut order: Vec<&Submitted> = batch.iter().collect();
    order.sort_by(|a, b| {
        (a.request.requested_at, &a.topic, a.partition, a.offset).cmp(&(
            b.request.requested_at,
            &b.topic,
            b.partition,
            b.offset,
        ))
    });

    let mut remaining: HashMap<i64, i64> =
        coupons.iter().map(|(id, c)| (*id, c.remaining)).collect();
    let mut decided: HashMap<&str, Outcome> = HashMap::new();
    let mut granted: HashSet<(i64, i64)> = HashSet::new();
    let mut plan = Plan::default();
    for submitted in order {
        let request = &submitted.request;
        let id = request.request_id.as_str();
        if let Some(outcome) = recorded
            .outcomes
            .get(id)
            .or_else(|| decided.get(id))
            .copied()
        {
            plan.decisions.push(Decision {
                submitted,
                outcome,
                reason: None,
                fresh: false,
            });
            continue;
        }
        let pair = (request.coupon_id, request.user_id);
        let (outcome, reason) = match check(submitted, coupons.get(&request.coupon_id)) {
            Err((outcome, reason)) => (outcome, Some(reason)),
            Ok(()) if recorded.grants.contains(&pair) || granted.contains(&pair) => (
                Outcome::Duplicate,
                Some(format!(
                    "user {} already holds coupon {}",
                    request.user_id, request.coupon_id
                )),
            ),
            Ok(()) => match remaining.get_mut(&request.coupon_id) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    granted.insert(pair);
                    *plan.taken.entry(request.coupon_id).or_default() += 1;
                    (Outcome::Issued, None)
                }
                _ => (
                    Outcome::SoldOut,
                    Some(format!("coupon {} has no stock left", request.coupon_id)),
                ),
            },
        };
        decided.insert(id, outcome);
        plan.decisions.push(Decision {
            submitted,
            outcome,
            reason,
            fresh: true,
        });
    }
    plan
}

/// Rules 2 and 3: the request and the coupon, before stock and holdings.
fn check(submitted: &Submitted, coupon: Option<&Coupon>) -> Result<(), (Outcome, String)> {
    let request = &submitted.request;
    let invalid = |reason: String| Err((Outcome::Invalid, reason));
    if request.coupon_id <= 0 || request.user_id <= 0 {
        return invalid("coupon_id and user_id must be positive".to_owned());
    }
    if request.requested_at > submitted.received_at + CLOCK_SKEW {
        return invalid(format!(
            "requested_at {} is later than the record's timestamp {}",
            request.requested_at.to_rfc3339(),
            submitted.received_at.to_rfc3339()
        ));
    }
    let Some(coupon) = coupon else {
        return invalid(format!("coupon {} does not exist", request.coupon_id));
    };
    if !coupon.active {
        return invalid(format!("coupon {} is not active", coupon.id));
    }
    if request.requested_at < coupon.valid_from {
        return invalid(format!(
            "coupon {} is not valid before {}",
            coupon.id,
            coupon.valid_from.to_rfc3339()
        ));
    }
    if request.requested_at >= coupon.valid_until {
        return Err((
            Outcome::Expired,
            format!(
                "coupon {} expired at {}",
                coupon.id,
                coupon.valid_until.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap_or_default()
            + TimeDelta::minutes(minute)
    }

    fn coupon(id: i64, remaining: i64) -> Coupon {
        Coupon {
            id,
            active: true,
            remaining,
            valid_from: at(0),
            valid_until: at(60),
        }
    }

    fn req(id: &str, coupon_id: i64, user_id: i64, minute: i64, offset: i64) -> Submitted {
        Submitted {
            request: IssueRequest {
                request_id: id.to_owned(),
                coupon_id,
                user_id,
                requested_at: at(minute),
            },
            topic: "coupon-issue-requests".to_owned(),
            partition: 0,
            offset,
            received_at: at(minute),
        }
    }

    fn outcomes(plan: &Plan<'_>) -> Vec<(String, Outcome, bool)> {
        plan.decisions
            .iter()
            .map(|d| (d.submitted.request.request_id.clone(), d.outcome, d.fresh))
            .collect()
    }

    fn coupons(list: &[Coupon]) -> HashMap<i64, Coupon> {
        list.iter().map(|c| (c.id, c.clone())).collect()
    }

    #[test]
    fn parses_the_schema_and_refuses_what_is_not_a_request() {
        let ok = parse_request(
            br#"{"request_id":"r-1","coupon_id":7,"user_id":9,
                 "requested_at":"2026-11-20T10:00:00+09:00","channel":"app"}"#,
        )
        .expect("valid request");
        assert_eq!(ok.coupon_id, 7);
        assert_eq!(ok.requested_at.to_rfc3339(), "2026-11-20T01:00:00+00:00");

        for (raw, reason) in [
            (&b"not json"[..], "malformed JSON"),
            (br#"{"request_id":"r","coupon_id":7,"user_id":9}"#, "missing field `requested_at`"),
            (
                br#"{"request_id":"r","coupon_id":"7","user_id":9,"requested_at":"2026-11-20T10:00:00Z"}"#,
                "invalid type",
            ),
            (
                br#"{"request_id":" ","coupon_id":7,"user_id":9,"requested_at":"2026-11-20T10:00:00Z"}"#,
                "request_id is empty",
            ),
            (
                br#"{"request_id":"a\u0000b","coupon_id":7,"user_id":9,"requested_at":"2026-11-20T10:00:00Z"}"#,
                "control characters",
            ),
            (
                br#"{"request_id":"r","coupon_id":7,"user_id":9,"requested_at":"+200000-01-01T00:00:00Z"}"#,
                "not a plausible time",
            ),
        ] {
            let err = parse_request(raw).expect_err("not a request");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains(reason), "{err}");
        }
        let long = format!(
            r#"{{"request_id":"{}","coupon_id":7,"user_id":9,"requested_at":"2026-11-20T10:00:00Z"}}"#,
            "x".repeat(MAX_REQUEST_ID_LEN + 1)
        );
        assert!(parse_request(long.as_bytes()).is_err());
    }

    #[test]
    fn stock_goes_to_the_earliest_requests_and_never_below_zero() {
        let batch = [
            req("late", 1, 3, 30, 0),
            req("first", 1, 1, 10, 1),
            req("second", 1, 2, 20, 2),
        ];
        let plan = decide(&batch, &coupons(&[coupon(1, 2)]), &Recorded::default());
        assert_eq!(
            outcomes(&plan),
            [
                ("first".to_owned(), Outcome::Issued, true),
                ("second".to_owned(), Outcome::Issued, true),
                ("late".to_owned(), Outcome::SoldOut, true),
            ]
        );
        assert_eq!(plan.taken, BTreeMap::from([(1, 2)]));
    }

    #[test]
    fn one_coupon_per_user_and_one_outcome_per_request_id() {
        let batch = [
            req("a", 1, 1, 1, 0),
            req("a", 1, 1, 1, 1), // the same request delivered twice
            req("b", 1, 1, 2, 2), // the same user asking again
            req("c", 1, 2, 3, 3), // holds it from an earlier batch
            req("d", 1, 3, 4, 4), // decided in an earlier batch
        ];
        let recorded = Recorded {
            outcomes: HashMap::from([("d".to_owned(), Outcome::SoldOut)]),
            grants: HashSet::from([(1, 2)]),
        };
        let plan = decide(&batch, &coupons(&[coupon(1, 10)]), &recorded);
        assert_eq!(
            outcomes(&plan),
            [
                ("a".to_owned(), Outcome::Issued, true),
                ("a".to_owned(), Outcome::Issued, false),
                ("b".to_owned(), Outcome::Duplicate, true),
                ("c".to_owned(), Outcome::Duplicate, true),
                ("d".to_owned(), Outcome::SoldOut, false),
            ]
        );
        assert_eq!(plan.taken, BTreeMap::from([(1, 1)]));
        assert_eq!(plan.fresh().count(), 3);
    }

    #[test]
    fn coupon_and_window_rules() {
        let mut paused = coupon(2, 5);
        paused.active = false;
        let mut future = req("future", 1, 5, 10, 5);
        future.request.requested_at = at(10) + CLOCK_SKEW + TimeDelta::seconds(1);
        let batch = [
            req("missing", 9, 1, 10, 0),
            req("paused", 2, 1, 10, 1),
            req("early", 1, 1, -1, 2),
            req("ended", 1, 2, 60, 3),
            req("zero-user", 1, 0, 10, 4),
            future,
            req("last-second", 1, 3, 59, 6),
        ];
        let plan = decide(
            &batch,
            &coupons(&[coupon(1, 5), paused]),
            &Recorded::default(),
        );
        let by_id: HashMap<String, (Outcome, Option<String>)> = plan
            .decisions
            .iter()
            .map(|d| {
                (
                    d.submitted.request.request_id.clone(),
                    (d.outcome, d.reason.clone()),
                )
            })
            .collect();
        let outcome = |id: &str| by_id.get(id).map(|(o, _)| *o);
        let reason = |id: &str| {
            by_id
                .get(id)
                .and_then(|(_, r)| r.clone())
                .unwrap_or_default()
        };
        assert_eq!(outcome("missing"), Some(Outcome::Invalid));
        assert!(reason("missing").contains("does not exist"));
        assert_eq!(outcome("paused"), Some(Outcome::Invalid));
        assert!(reason("paused").contains("not active"));
        assert_eq!(outcome("early"), Some(Outcome::Invalid));
        assert!(reason("early").contains("not valid before"));
        assert_eq!(outcome("ended"), Some(Outcome::Expired));
        assert_eq!(outcome("zero-user"), Some(Outcome::Invalid));
        assert_eq!(outcome("future"), Some(Outcome::Invalid));
        assert!(reason("future").contains("later than the record's timestamp"));
        assert_eq!(outcome("last-second"), Some(Outcome::Issued));
        assert_eq!(plan.taken, BTreeMap::from([(1, 1)]));
    }

    #[test]
    fn a_coupon_out_of_stock_sells_out_without_counting_holdings_first() {
        let batch = [req("x", 1, 1, 1, 0), req("y", 1, 2, 2, 1)];
        let recorded = Recorded {
            grants: HashSet::from([(1, 1)]),
            ..Recorded::default()
        };
        let plan = decide(&batch, &coupons(&[coupon(1, 0)]), &recorded);
        assert_eq!(
            outcomes(&plan),
            [
                ("x".to_owned(), Outcome::Duplicate, true),
                ("y".to_owned(), Outcome::SoldOut, true),
            ]
        );
        assert!(plan.taken.is_empty());
        assert_eq!(
            plan.counts(),
            BTreeMap::from([(Outcome::SoldOut, 1), (Outcome::Duplicate, 1)])
        );
    }

    #[test]
    fn outcomes_round_trip_through_their_names() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
            assert_eq!(
                serde_json::to_value(outcome).ok(),
                Some(serde_json::Value::String(outcome.as_str().to_owned()))
            );
        }
        assert_eq!(Outcome::parse("lost"), None);
    }
}

/// Properties of [`parse_request`] over arbitrary input: it never panics, refuses with a
/// permanent, storable reason, and accepts only requests `coupon_issue_outcomes` holds.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::text::properties::{
        parser_properties, postgres_holds_text, postgres_holds_timestamp, refused,
    };

    const SAMPLE: &str = r#"{"request_id": "5f0c1c2e-0001-4a6b-9d1e-000000000001",
        "coupon_id": 3001, "user_id": 9001, "requested_at": "2026-11-20T10:00:00+09:00",
        "channel": "app"}"#;

    fn check(value: &[u8]) -> Result<(), TestCaseError> {
        let request = match parse_request(value) {
            Ok(request) => request,
            Err(err) => return refused(&err),
        };
        let id = request.request_id.as_str();
        prop_assert!(!id.trim().is_empty() && id.len() <= MAX_REQUEST_ID_LEN);
        prop_assert!(postgres_holds_text(id) && !id.chars().any(char::is_control));
        prop_assert!((2000..=9999).contains(&request.requested_at.year()));
        prop_assert!(postgres_holds_timestamp(request.requested_at));
        Ok(())
    }

    #[test]
    fn the_sample_is_valid() {
        assert!(parse_request(SAMPLE.as_bytes()).is_ok());
    }

    parser_properties!(SAMPLE, |value: &[u8], _at| check(value));
}
