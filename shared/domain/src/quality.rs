//! Quality scores (SPEC §2, `quality-score-updates`): which updates are stored, which are
//! history, which notify the advertiser. Pure, so every rule is tested without a database.
//!
//! A campaign's stored score carries the `computed_at` of the update that set it. An update
//! not newer than that is already reflected (a replay, or a late arrival) and is ignored; that
//! makes a redelivered batch change nothing, whatever order its scores went in.

use chrono::{DateTime, Datelike as _, TimeDelta, Utc};
use serde::Deserialize;

use crate::WorkerError;

/// A score must move at least this much to be stored.
pub const MIN_STEP: f64 = 0.5;
/// A fall of at least this much notifies the advertiser.
pub const SHARP_DROP: f64 = 2.0;
/// How far ahead of the record's time a score's `computed_at` may be.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);
/// Scores are decimals sent as binary floats: 7.3 - 6.8 must count as 0.5.
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScoreUpdate {
    pub campaign_id: i64,
    pub advertiser_id: i64,
    pub score: f64,
    pub computed_at: DateTime<Utc>,
}

pub fn parse_score(value: &[u8], received_at: DateTime<Utc>) -> Result<ScoreUpdate, WorkerError> {
    let update: ScoreUpdate = crate::text::json_object(value)?;
    // A score from the future would hold the campaign's score against every real update after
    // it ("not newer"); one before 2000 is not a score of ours, and PostgreSQL holds neither end.
    if update.computed_at > received_at + MAX_CLOCK_SKEW {
        return Err(WorkerError::out_of_range(format_args!(
            "computed_at {} is in the future (received at {received_at})",
            update.computed_at
        )));
    }
    if update.computed_at.year() < 2000 {
        return Err(WorkerError::out_of_range(format_args!(
            "computed_at {} is before 2000",
            update.computed_at
        )));
    }
    if update.campaign_id <= 0 || update.advertiser_id <= 0 {
        return Err(WorkerError::out_of_range(
            "campaign_id and advertiser_id must be positive",
        ));
    }
    if !update.score.is_finite() || !(0.0..=10.0).contains(&update.score) {
        return Err(WorkerError::out_of_range(format_args!(
            "score {} is outside 0.0..=10.0",
            update.score
        )));
    }
    Ok(update)
}

/// What is stored for a campaign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stored {
    pub score: f64,
    pub computed_at: DateTime<Utc>,
}

/// One write: the new score, what it replaced, and whether the advertiser hears of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreChange {
    pub campaign_id: i64,
    pub advertiser_id: i64,
    pub previous: Option<f64>,
    pub score: f64,
    pub computed_at: DateTime<Utc>,
    pub sharp_drop: bool,
}

/// Folds one campaign's updates, in the order they were produced, over its stored score.
pub fn decide<'a>(
    stored: Option<Stored>,
    updates: impl IntoIterator<Item = &'a ScoreUpdate>,
) -> Vec<ScoreChange> {
    let mut current = stored;
    let mut changes = Vec::new();
    for update in updates {
        let previous = match current {
            Some(stored) if update.computed_at <= stored.computed_at => continue,
            Some(stored) if (update.score - stored.score).abs() + EPSILON < MIN_STEP => continue,
            Some(stored) => Some(stored.score),
            None => None,
        };
        changes.push(ScoreChange {
            campaign_id: update.campaign_id,
            advertiser_id: update.advertiser_id,
            previous,
            score: update.score,
            computed_at: update.computed_at,
            sharp_drop: previous.is_some_and(|p| p - update.score + EPSILON >= SHARP_DROP),
        });
        current = Some(Stored {
            score: update.score,
            computed_at: update.computed_at,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-11-20T10:{minute:02}:00Z")
            .parse()
            .expect("timestamp")
    }

    fn update(score: f64, minute: u32) -> ScoreUpdate {
        ScoreUpdate {
            campaign_id: 1,
            advertiser_id: 9,
            score,
            computed_at: at(minute),
        }
    }

    fn scores(changes: &[ScoreChange]) -> Vec<f64> {
        changes.iter().map(|c| c.score).collect()
    }

    #[test]
    fn the_first_score_is_always_written() {
        let changes = decide(None, &[update(3.0, 1)]);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].previous, None);
        assert!(!changes[0].sharp_drop);
    }

    #[test]
    fn only_moves_of_half_a_point_are_written_compared_with_the_last_write() {
        let updates = [
            update(7.2, 1),
            update(7.6, 2),
            update(7.7, 3),
            update(6.8, 4),
        ];
        let stored = Some(Stored {
            score: 7.0,
            computed_at: at(0),
        });
        // 7.2 (+0.2) no, 7.6 (+0.6) yes, 7.7 (+0.1 from 7.6) no, 6.8 (-0.8) yes.
        assert_eq!(scores(&decide(stored, &updates)), [7.6, 6.8]);
        let exact = Some(Stored {
            score: 6.8,
            computed_at: at(0),
        });
        assert_eq!(
            scores(&decide(exact, &[update(7.3, 1)])),
            [7.3],
            "7.3 - 6.8 is a full 0.5"
        );
    }

    #[test]
    fn a_drop_of_two_points_is_sharp() {
        let stored = Some(Stored {
            score: 8.0,
            computed_at: at(0),
        });
        let changes = decide(stored, &[update(6.0, 1), update(3.0, 2)]);
        assert_eq!(
            changes.iter().map(|c| c.sharp_drop).collect::<Vec<_>>(),
            [true, true]
        );
        let mild = decide(stored, &[update(6.1, 1)]);
        assert!(!mild[0].sharp_drop);
    }

    #[test]
    fn a_replayed_batch_changes_nothing() {
        let updates = [update(5.0, 1), update(9.0, 2), update(4.0, 3)];
        let first = decide(
            Some(Stored {
                score: 4.0,
                computed_at: at(0),
            }),
            &updates,
        );
        assert_eq!(scores(&first), [5.0, 9.0, 4.0]);
        let after = Some(Stored {
            score: 4.0,
            computed_at: at(3),
        });
        assert!(decide(after, &updates).is_empty());
    }

    #[test]
    fn out_of_range_scores_are_rejected() {
        let body = |score: &str| {
            format!(
                r#"{{"campaign_id": 1, "advertiser_id": 2, "score": {score}, "computed_at": "2026-11-20T10:00:00Z"}}"#
            )
        };
        assert!(parse_score(body("10.0").as_bytes(), received()).is_ok());
        assert!(parse_score(body("0").as_bytes(), received()).is_ok());
        for bad in ["10.01", "-0.1"] {
            let err = parse_score(body(bad).as_bytes(), received()).expect_err("out of range");
            assert!(err.to_string().contains("outside 0.0..=10.0"), "{err}");
        }
        assert!(parse_score(b"{}", received()).is_err());
    }

    pub(super) fn received() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T10:00:05Z")
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_score_from_the_future_or_before_2000_is_refused() {
        let at = |computed_at: &str| {
            format!(
                r#"{{"campaign_id": 1, "advertiser_id": 2, "score": 5, "computed_at": "{computed_at}"}}"#
            )
        };
        assert!(parse_score(at("2026-11-20T10:04:59Z").as_bytes(), received()).is_ok());
        let future = parse_score(at("2099-01-01T00:00:00Z").as_bytes(), received());
        assert!(
            future
                .expect_err("future")
                .to_string()
                .contains("in the future")
        );
        let ancient = parse_score(at("-4713-11-23T23:59:59Z").as_bytes(), received());
        assert!(
            ancient
                .expect_err("ancient")
                .to_string()
                .contains("before 2000")
        );
    }
}

/// Properties of [`parse_score`] over arbitrary input: it never panics, refuses with a
/// permanent, storable reason, and accepts only updates `quality_scores` holds.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::text::properties::{parser_properties, postgres_holds_timestamp, refused};

    const SAMPLE: &str = r#"{"campaign_id": 2001, "advertiser_id": 501, "score": 8.4,
        "computed_at": "2026-11-20T10:00:00Z"}"#;

    fn check(value: &[u8], received_at: DateTime<Utc>) -> Result<(), TestCaseError> {
        let update = match parse_score(value, received_at) {
            Ok(update) => update,
            Err(err) => return refused(&err),
        };
        prop_assert!(update.campaign_id > 0 && update.advertiser_id > 0);
        prop_assert!(update.score.is_finite() && (0.0..=10.0).contains(&update.score));
        prop_assert!(update.computed_at <= received_at + MAX_CLOCK_SKEW);
        prop_assert!(
            postgres_holds_timestamp(update.computed_at),
            "computed_at {} is outside PostgreSQL's timestamptz",
            update.computed_at
        );
        Ok(())
    }

    #[test]
    fn the_sample_is_valid() {
        assert!(parse_score(SAMPLE.as_bytes(), super::tests::received()).is_ok());
    }

    parser_properties!(SAMPLE, check);
}
