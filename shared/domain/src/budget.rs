//! Budget sync (SPEC §2, `budget-management`): every 10 minutes Flink compares each campaign's
//! Redis day counter with the DB deductions and sends the result here. The DB is the source of
//! truth: a difference of 5 % or more corrects the Redis counter, and a campaign whose spend
//! reached its daily budget can be paused.
//!
//! Redis key schema (the `{campaign}` hash tag keeps a campaign's keys in one cluster slot, so
//! the correction script may touch them together):
//!
//! | key | type | written by |
//! |---|---|---|
//! | `budget:spent:{<campaign>}:<yyyymmdd>` | integer, won spent that KST day | ad servers (`INCRBY`), corrections |
//! | `budget:status:{<campaign>}` | `active` / `paused` | this function on a pause |
//! | `budget:sync:{<campaign>}:<topic>:<partition>:<offset>:<timestamp ms>` | marker, expires after 7 days | the correction script |

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::WorkerError;
use crate::calendar::kst_date;

/// A relative difference of at least this much is corrected.
pub const CORRECTION_THRESHOLD: f64 = 0.05;
/// How long a correction's marker outlives it: longer than any redelivery of its record.
pub const MARKER_TTL_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    #[default]
    None,
    AdjustRedis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignAction {
    #[default]
    None,
    PauseIfExceeded,
}

/// The seed sends campaign ids as strings; numbers are accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum CampaignId {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSync {
    campaign_id: CampaignId,
    redis_spent: i64,
    db_spent: i64,
    #[serde(default)]
    accuracy_ratio: Option<f64>,
    #[serde(default)]
    sync_action: SyncAction,
    #[serde(default)]
    campaign_action: CampaignAction,
    /// The KST day the counters are for; defaults to the record's day in KST.
    #[serde(default)]
    spend_date: Option<NaiveDate>,
}

/// A validated sync result.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSync {
    pub campaign_id: i64,
    pub spend_date: NaiveDate,
    pub redis_spent: i64,
    pub db_spent: i64,
    pub reported_ratio: Option<f64>,
    pub sync_action: SyncAction,
    pub campaign_action: CampaignAction,
}

/// The largest spend a counter may report: 10^15 (a thousand billion won in micros would be
/// 10^18; no campaign spends that in a day), so no sum or difference of two overflows i64.
pub const MAX_SPENT: i64 = 1_000_000_000_000_000;

/// No budget is older than the platform.
const EARLIEST_SPEND_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(day) => day,
    None => NaiveDate::MIN,
};
/// No spend date is later than this (PostgreSQL's `date` ends in 5874897, our business sooner).
const LATEST_SPEND_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a valid date");

/// Parses one message; `produced_at` (the record's timestamp) dates a message without
/// `spend_date`.
pub fn parse_sync(value: &[u8], produced_at: DateTime<Utc>) -> Result<BudgetSync, WorkerError> {
    let wire: WireSync = crate::text::json_object(value)?;
    let campaign_id = match wire.campaign_id {
        CampaignId::Number(id) => id,
        CampaignId::Text(text) => text.trim().parse().map_err(|_| {
            WorkerError::malformed(format_args!("campaign_id {text:?} is not an integer"))
        })?,
    };
    if campaign_id <= 0 {
        return Err(WorkerError::out_of_range("campaign_id must be positive"));
    }
    if wire.redis_spent < 0 || wire.db_spent < 0 {
        return Err(WorkerError::out_of_range(
            "redis_spent and db_spent must not be negative",
        ));
    }
    if wire.redis_spent > MAX_SPENT || wire.db_spent > MAX_SPENT {
        return Err(WorkerError::out_of_range(format_args!(
            "redis_spent and db_spent must not exceed {MAX_SPENT} (a day's spend; their \
             difference must fit Redis' 64-bit counters)"
        )));
    }
    if let Some(ratio) = wire.accuracy_ratio
        && !(ratio.is_finite() && (0.0..=1.0).contains(&ratio))
    {
        return Err(WorkerError::out_of_range(format_args!(
            "accuracy_ratio {ratio} is outside 0.0..=1.0"
        )));
    }
    let produced_on = kst_date(produced_at);
    let spend_date = wire.spend_date.unwrap_or(produced_on);
    // The day after the record was produced, and never past 9999: a broken producer clock
    // must not make a date PostgreSQL cannot hold.
    let latest = produced_on
        .succ_opt()
        .unwrap_or(NaiveDate::MAX)
        .min(LATEST_SPEND_DATE);
    if spend_date < EARLIEST_SPEND_DATE || spend_date > latest {
        return Err(WorkerError::out_of_range(format_args!(
            "spend_date {spend_date} is outside {EARLIEST_SPEND_DATE}..={latest} (the day after \
             the record was produced)"
        )));
    }
    Ok(BudgetSync {
        campaign_id,
        spend_date,
        redis_spent: wire.redis_spent,
        db_spent: wire.db_spent,
        reported_ratio: wire.accuracy_ratio,
        sync_action: wire.sync_action,
        campaign_action: wire.campaign_action,
    })
}

impl BudgetSync {
    /// min / max of the two counters, as the seed's `accuracy_ratio` (44,750 / 45,000 = 0.994);
    /// 1.0 when both are zero.
    pub fn accuracy(&self) -> f64 {
        let (low, high) = if self.redis_spent <= self.db_spent {
            (self.redis_spent, self.db_spent)
        } else {
            (self.db_spent, self.redis_spent)
        };
        if high == 0 {
            1.0
        } else {
            low as f64 / high as f64
        }
    }

    /// |redis − db| / db; a non-zero Redis counter against a zero DB is a full difference.
    pub fn difference_ratio(&self) -> f64 {
        let difference = self.redis_spent.abs_diff(self.db_spent);
        match (difference, self.db_spent) {
            (0, _) => 0.0,
            (_, 0) => 1.0,
            (difference, db) => difference as f64 / db as f64,
        }
    }

    /// The amount to add to the Redis counter, when the message asks for a correction and the
    /// difference reaches the threshold. A delta, not a value: increments the ad servers made
    /// after Flink read the counter survive the correction.
    pub fn correction(&self) -> Option<i64> {
        (self.sync_action == SyncAction::AdjustRedis
            && self.difference_ratio() >= CORRECTION_THRESHOLD)
            .then(|| self.db_spent - self.redis_spent)
    }

    /// Whether this message may pause its campaign: it asks to, and it is about today's (KST)
    /// spend, so a late message about an earlier day pauses nothing. Whether the campaign is
    /// still active and its budget reached is for the store to read under the campaign row's
    /// lock ([`budget_reached`]), so a concurrent resume or budget change is seen.
    pub fn may_pause(&self, today: NaiveDate) -> bool {
        self.campaign_action == CampaignAction::PauseIfExceeded && self.spend_date == today
    }
}

/// A day's spend has reached a daily budget; a campaign without a budget never does. The
/// store applies the same rule in its `UPDATE … WHERE` (`sql/record.sql`), where it is atomic
/// with the pause; this is its statement in Rust and what the tests hold it to.
pub fn budget_reached(db_spent: i64, daily_budget: Option<i64>) -> bool {
    daily_budget.is_some_and(|budget| db_spent >= budget)
}

/// `budget:spent:{<campaign>}:<yyyymmdd>`
pub fn counter_key(campaign_id: i64, day: NaiveDate) -> String {
    format!("budget:spent:{{{campaign_id}}}:{}", day.format("%Y%m%d"))
}

/// The glob matching every campaign's counter of one day, for `SCAN ... MATCH`.
pub fn counter_pattern(day: NaiveDate) -> String {
    format!("budget:spent:{{*}}:{}", day.format("%Y%m%d"))
}

/// The campaign and day of a counter key; `None` for any other key.
pub fn parse_counter_key(key: &str) -> Option<(i64, NaiveDate)> {
    let rest = key.strip_prefix("budget:spent:{")?;
    let (campaign, day) = rest.split_once("}:")?;
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day = NaiveDate::parse_from_str(day, "%Y%m%d").ok()?;
    Some((campaign.parse().ok()?, day))
}

/// `budget:status:{<campaign>}`
pub fn status_key(campaign_id: i64) -> String {
    format!("budget:status:{{{campaign_id}}}")
}

/// The record a correction came from: its position and its timestamp (so a topic that was
/// recreated, and reuses offsets, cannot match an older record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// `budget:sync:{<campaign>}:<topic>:<partition>:<offset>:<timestamp ms>`: marks one record's
/// correction as applied.
pub fn marker_key(campaign_id: i64, source: Source<'_>) -> String {
    let Source {
        topic,
        partition,
        offset,
        timestamp_ms,
    } = source;
    format!("budget:sync:{{{campaign_id}}}:{topic}:{partition}:{offset}:{timestamp_ms}")
}

/// The Redis side of a message, as `budget_sync_accuracy.correction` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Not asked for, or under the threshold.
    None,
    /// Due now: applied at once if Redis takes it, else recorded `pending` (queued) until a
    /// later batch applies it.
    Pending,
    Applied,
    /// A newer message about the same counter came: applying this one too would correct twice.
    Superseded,
    /// Redis refused the increment: the counter would overflow, or is not an integer.
    Refused,
}

impl Correction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Applied => "applied",
            Self::Superseded => "superseded",
            Self::Refused => "refused",
        }
    }
}

/// What a batch's messages ask of Redis, each given with its record time and offset: per
/// counter (campaign and day) only the newest message's correction is due (newest by record
/// time, then offset); an older one in the batch is superseded, since applying both would
/// correct the counter twice. A message that asks for no correction gets `None`.
pub fn plan<'a>(
    messages: impl IntoIterator<Item = (&'a BudgetSync, DateTime<Utc>, i64)> + Clone,
) -> Vec<Correction> {
    let mut newest: std::collections::HashMap<(i64, NaiveDate), (DateTime<Utc>, i64)> =
        std::collections::HashMap::new();
    for (sync, produced_at, offset) in messages.clone() {
        let at = (produced_at, offset);
        newest
            .entry((sync.campaign_id, sync.spend_date))
            .and_modify(|n| *n = (*n).max(at))
            .or_insert(at);
    }
    messages
        .into_iter()
        .map(|(sync, produced_at, offset)| match sync.correction() {
            None => Correction::None,
            Some(_)
                if newest.get(&(sync.campaign_id, sync.spend_date))
                    == Some(&(produced_at, offset)) =>
            {
                Correction::Pending
            }
            Some(_) => Correction::Superseded,
        })
        .collect()
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn sync(campaign_id: i64, redis_spent: i64, db_spent: i64) -> BudgetSync {
        let at = DateTime::parse_from_rfc3339("2026-11-20T05:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc);
        let value = format!(
            r#"{{"campaign_id": "{campaign_id}", "redis_spent": {redis_spent}, "db_spent": {db_spent}, "accuracy_ratio": 0.5, "sync_action": "adjust_redis", "campaign_action": "none"}}"#
        );
        parse_sync(value.as_bytes(), at).expect("a valid sync")
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + seconds, 0).expect("valid time")
    }

    #[test]
    fn only_the_newest_correction_of_a_counter_is_due() {
        let (a_old, a_new, b, none) = (
            sync(1, 1_000, 2_000),
            sync(1, 1_500, 2_000),
            sync(2, 1_000, 2_000),
            sync(3, 1_000, 1_010),
        );
        let batch = [
            (&a_new, at(10), 5),
            (&a_old, at(0), 9),
            (&b, at(0), 1),
            (&none, at(0), 2),
        ];
        assert_eq!(
            plan(batch.iter().copied()),
            [
                Correction::Pending,
                Correction::Superseded,
                Correction::Pending,
                Correction::None
            ]
        );
    }

    #[test]
    fn the_same_record_time_is_decided_by_offset() {
        let (first, second) = (sync(1, 1_000, 2_000), sync(1, 1_200, 2_000));
        let batch = [(&first, at(0), 7), (&second, at(0), 8)];
        assert_eq!(
            plan(batch.iter().copied()),
            [Correction::Superseded, Correction::Pending]
        );
        assert_eq!(Correction::Pending.as_str(), "pending");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("timestamp")
    }

    #[test]
    fn only_a_message_about_today_that_asks_may_pause() {
        let today: NaiveDate = "2026-11-20".parse().expect("date");
        let sync = |action, day: &str| BudgetSync {
            campaign_id: 12345,
            spend_date: day.parse().expect("date"),
            redis_spent: 45_000,
            db_spent: 45_000,
            reported_ratio: None,
            sync_action: SyncAction::None,
            campaign_action: action,
        };
        assert!(sync(CampaignAction::PauseIfExceeded, "2026-11-20").may_pause(today));
        assert!(!sync(CampaignAction::PauseIfExceeded, "2026-11-19").may_pause(today));
        assert!(!sync(CampaignAction::None, "2026-11-20").may_pause(today));
    }

    #[test]
    fn a_budget_is_reached_at_its_amount_and_never_without_one() {
        assert!(budget_reached(45_000, Some(45_000)));
        assert!(budget_reached(45_001, Some(45_000)));
        assert!(!budget_reached(44_999, Some(45_000)));
        assert!(!budget_reached(i64::MAX, None));
    }

    #[test]
    fn counter_keys_parse_back_and_nothing_else_does() {
        let day: NaiveDate = "2026-11-20".parse().expect("date");
        assert_eq!(parse_counter_key(&counter_key(42, day)), Some((42, day)));
        assert_eq!(counter_pattern(day), "budget:spent:{*}:20261120");
        for other in [
            status_key(42),
            "budget:spent:{x}:20261120".to_owned(),
            "budget:spent:{42}:2026112".to_owned(),
            "budget:spent:42:20261120".to_owned(),
        ] {
            assert_eq!(parse_counter_key(&other), None, "{other}");
        }
    }

    fn seed() -> BudgetSync {
        parse_sync(
            br#"{"campaign_id": "12345", "redis_spent": 45000, "db_spent": 44750,
                 "accuracy_ratio": 0.994, "sync_action": "adjust_redis",
                 "campaign_action": "pause_if_exceeded"}"#,
            at("2026-11-20T15:30:00Z"),
        )
        .expect("the seed's message")
    }

    #[test]
    fn the_seed_message_parses_and_is_dated_in_kst() {
        let sync = seed();
        assert_eq!(sync.campaign_id, 12345);
        assert_eq!(sync.sync_action, SyncAction::AdjustRedis);
        assert_eq!(sync.campaign_action, CampaignAction::PauseIfExceeded);
        // 15:30 UTC is 00:30 the next day in Seoul.
        assert_eq!(
            sync.spend_date,
            NaiveDate::from_ymd_opt(2026, 11, 21).expect("date")
        );
        assert!((sync.accuracy() - 0.994).abs() < 0.001);
    }

    #[test]
    fn numeric_ids_and_explicit_dates_are_accepted() {
        let sync = parse_sync(
            br#"{"campaign_id": 7, "redis_spent": 0, "db_spent": 0, "spend_date": "2026-11-19"}"#,
            at("2026-11-20T00:00:00Z"),
        )
        .expect("valid");
        assert_eq!(sync.campaign_id, 7);
        assert_eq!(sync.spend_date.to_string(), "2026-11-19");
        assert_eq!(sync.sync_action, SyncAction::None);
        assert_eq!(sync.accuracy(), 1.0);
        assert_eq!(sync.correction(), None);
    }

    #[test]
    fn a_difference_under_five_percent_is_left_alone() {
        assert_eq!(seed().correction(), None, "0.56 % apart");
        let mut sync = seed();
        sync.redis_spent = 47_000; // 5.03 % over 44,750
        assert_eq!(sync.correction(), Some(-2_250));
        sync.redis_spent = 42_000; // 6.1 % under
        assert_eq!(sync.correction(), Some(2_750));
        sync.sync_action = SyncAction::None;
        assert_eq!(sync.correction(), None, "only when the message asks");
    }

    #[test]
    fn exactly_five_percent_is_corrected() {
        let mut sync = seed();
        sync.db_spent = 100_000;
        sync.redis_spent = 105_000;
        assert_eq!(sync.correction(), Some(-5_000));
    }

    #[test]
    fn redis_spend_against_a_zero_db_is_corrected_to_zero() {
        let mut sync = seed();
        sync.db_spent = 0;
        sync.redis_spent = 300;
        assert_eq!(sync.difference_ratio(), 1.0);
        assert_eq!(sync.correction(), Some(-300));
        assert_eq!(sync.accuracy(), 0.0);
    }

    #[test]
    fn bad_messages_say_why() {
        let now = at("2026-11-20T00:00:00Z");
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"campaign_id": "abc", "redis_spent": 1, "db_spent": 1}"#,
                "not an integer",
            ),
            (
                br#"{"campaign_id": 0, "redis_spent": 1, "db_spent": 1}"#,
                "positive",
            ),
            (
                br#"{"campaign_id": 1, "redis_spent": -1, "db_spent": 1}"#,
                "negative",
            ),
            (
                br#"{"campaign_id": 1, "redis_spent": 1, "db_spent": 1, "accuracy_ratio": 1.5}"#,
                "outside",
            ),
            (
                br#"{"campaign_id": 1, "redis_spent": 1, "db_spent": 1, "sync_action": "reset"}"#,
                "unknown variant",
            ),
        ];
        for (body, reason) in cases {
            let err = parse_sync(body, now).expect_err("invalid");
            assert!(err.to_string().contains(reason), "{err} lacks {reason}");
        }
    }

    #[test]
    fn keys_share_the_campaign_hash_tag() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
        assert_eq!(counter_key(42, day), "budget:spent:{42}:20261120");
        assert_eq!(status_key(42), "budget:status:{42}");
        let source = Source {
            topic: "budget-management",
            partition: 1,
            offset: 99,
            timestamp_ms: 1_763_650_800_000,
        };
        assert_eq!(
            marker_key(42, source),
            "budget:sync:{42}:budget-management:1:99:1763650800000"
        );
    }

    #[test]
    fn values_the_database_or_redis_cannot_hold_are_refused() {
        let at: DateTime<Utc> = "2026-11-20T03:00:00Z".parse().expect("instant");
        for bad in [
            &br#"[1, 2, 3]"#[..],
            br#"{"campaign_id": 1, "spend_date": "-5000-01-01", "redis_spent": 1, "db_spent": 1, "sync_action": "adjust_redis"}"#,
            br#"{"campaign_id": 1, "spend_date": "2036-11-20", "redis_spent": 1, "db_spent": 1, "sync_action": "adjust_redis"}"#,
            br#"{"campaign_id": 1, "redis_spent": 1, "db_spent": 9223372036854775000, "sync_action": "adjust_redis"}"#,
        ] {
            let err = parse_sync(bad, at).expect_err("refused");
            assert!(!err.is_retryable(), "{err}");
            assert!(!err.to_string().contains("unknown variant"), "{err}");
        }
        let fine = br#"{"campaign_id": 1, "spend_date": "2026-11-21", "redis_spent": 1, "db_spent": 1, "sync_action": "adjust_redis"}"#;
        assert!(
            parse_sync(fine, at).is_ok(),
            "the next day is still accepted"
        );
    }
}

/// Properties of [`parse_sync`] over arbitrary input and record times: it never panics,
/// refuses with a permanent, storable reason, and accepts only syncs whose amounts, date and
/// correction `budget_sync_accuracy` and a Redis counter hold.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::text::properties::{parser_properties, refused};

    const SAMPLE: &str = r#"{"campaign_id": "12345", "redis_spent": 45000, "db_spent": 44750,
        "accuracy_ratio": 0.994, "sync_action": "adjust_redis",
        "campaign_action": "pause_if_exceeded", "spend_date": "2026-11-20"}"#;

    fn check(value: &[u8], produced_at: DateTime<Utc>) -> Result<(), TestCaseError> {
        let sync = match parse_sync(value, produced_at) {
            Ok(sync) => sync,
            Err(err) => return refused(&err),
        };
        prop_assert!(sync.campaign_id > 0);
        prop_assert!((0..=MAX_SPENT).contains(&sync.redis_spent));
        prop_assert!((0..=MAX_SPENT).contains(&sync.db_spent));
        if let Some(ratio) = sync.reported_ratio {
            prop_assert!(ratio.is_finite() && (0.0..=1.0).contains(&ratio));
        }
        let latest = kst_date(produced_at).succ_opt().unwrap_or(NaiveDate::MAX);
        prop_assert!(EARLIEST_SPEND_DATE <= sync.spend_date && sync.spend_date <= latest);
        let accuracy = sync.accuracy();
        prop_assert!((0.0..=1.0).contains(&accuracy), "accuracy {accuracy}");
        let difference = sync.difference_ratio();
        prop_assert!(difference.is_finite() && difference >= 0.0);
        if let Some(delta) = sync.correction() {
            prop_assert!(delta.unsigned_abs() <= MAX_SPENT as u64);
        }
        // The keys it writes are well-formed and name the campaign and day back.
        let key = counter_key(sync.campaign_id, sync.spend_date);
        prop_assert_eq!(
            parse_counter_key(&key),
            Some((sync.campaign_id, sync.spend_date))
        );
        Ok(())
    }

    #[test]
    fn the_sample_is_valid() {
        let at = "2026-11-20T03:00:00Z".parse().expect("instant");
        assert!(parse_sync(SAMPLE.as_bytes(), at).is_ok());
    }

    parser_properties!(SAMPLE, check);
}
