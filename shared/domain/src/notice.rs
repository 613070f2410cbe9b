//! The notifications the functions publish, as data: what each says and the key a reader
//! de-duplicates it by. `adapters::outbox` stores and publishes them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::quality::ScoreChange;

/// A message attribute, as SNS filter policies read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum Attribute {
    String(String),
    Number(String),
}

/// One notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The same for every announcement of the same event, and only for it.
    pub dedup_key: String,
    pub subject: String,
    pub body: Value,
    pub attributes: Vec<(String, Attribute)>,
    /// The Kafka record key, for an outbox that publishes to Kafka; SNS has none.
    pub key: Option<String>,
}

/// A campaign paused because its day's DB spend reached its daily budget (budget-sync, to the
/// operators).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pause {
    pub campaign_id: i64,
    pub advertiser_id: i64,
    pub spend_date: NaiveDate,
    pub db_spent: i64,
    pub daily_budget: i64,
    pub paused_at: DateTime<Utc>,
}

/// One per pause: a campaign resumed and paused again the same day is announced again.
pub fn campaign_paused(pause: &Pause) -> Notice {
    let Pause {
        campaign_id,
        advertiser_id,
        spend_date,
        db_spent,
        daily_budget,
        paused_at,
    } = pause;
    Notice {
        dedup_key: format!(
            "campaign-paused:{campaign_id}:{}",
            timestamp_key(*paused_at)
        ),
        subject: "Campaign paused: daily budget reached".to_owned(),
        body: json!({
            "type": "campaign_paused",
            "reason": "daily budget reached",
            "campaign_id": campaign_id,
            "advertiser_id": advertiser_id,
            "spend_date": spend_date,
            "db_spent": db_spent,
            "daily_budget": daily_budget,
        }),
        attributes: Vec::new(),
        key: None,
    }
}

/// A sharp drop of a campaign's quality score (quality-score, to the advertiser, who filters on
/// `advertiser_id`). One per campaign and score time.
pub fn quality_score_drop(change: &ScoreChange) -> Notice {
    Notice {
        dedup_key: format!(
            "quality-score-drop:{}:{}",
            change.campaign_id,
            timestamp_key(change.computed_at)
        ),
        subject: "Quality score dropped".to_owned(),
        body: json!({
            "type": "quality_score_drop",
            "campaign_id": change.campaign_id,
            "advertiser_id": change.advertiser_id,
            "previous_score": change.previous,
            "score": change.score,
            "computed_at": change.computed_at,
        }),
        attributes: vec![(
            "advertiser_id".to_owned(),
            Attribute::Number(change.advertiser_id.to_string()),
        )],
        key: None,
    }
}

/// An advertiser the CDP backfill deactivated because a month exhausted its retries (to the
/// operators). One per deactivation: activated and deactivated again, it is announced again.
pub fn advertiser_deactivated(
    advertiser_id: i64,
    month: NaiveDate,
    error: Option<&str>,
    deactivated_at: DateTime<Utc>,
) -> Notice {
    Notice {
        dedup_key: format!(
            "advertiser-deactivated:{advertiser_id}:{}",
            timestamp_key(deactivated_at)
        ),
        subject: "CDP backfill: advertiser deactivated".to_owned(),
        body: json!({
            "type": "advertiser_deactivated",
            "reason": "a month failed after its retries",
            "advertiser_id": advertiser_id,
            "month": month.format("%Y-%m").to_string(),
            "error": error,
            "deactivated_at": deactivated_at,
            "runbook": "docs/functions/cdp-backfill.md#operating-it",
        }),
        attributes: Vec::new(),
        key: None,
    }
}

/// A time as keys write it: UTC to the microsecond, as PostgreSQL keeps it.
fn timestamp_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_keyed_by_campaign_and_the_time_it_was_paused() {
        let pause: Pause = serde_json::from_value(json!({
            "campaign_id": 101, "advertiser_id": 7, "spend_date": "2026-11-20",
            "db_spent": 120_000, "daily_budget": 100_000,
            "paused_at": "2026-11-20T05:00:00.000001+00:00"
        }))
        .expect("a pause as PostgreSQL writes it in JSON");
        let notice = campaign_paused(&pause);
        assert_eq!(
            notice.dedup_key,
            "campaign-paused:101:2026-11-20T05:00:00.000001Z"
        );
        assert_eq!(notice.body["spend_date"], "2026-11-20");
        assert_eq!(notice.body["type"], "campaign_paused");
        assert!(notice.attributes.is_empty());
    }

    #[test]
    fn a_drop_is_keyed_by_campaign_and_score_time_and_filterable_by_advertiser() {
        let at = DateTime::parse_from_rfc3339("2026-11-20T10:00:00.5Z")
            .expect("valid time")
            .with_timezone(&Utc);
        let change = ScoreChange {
            campaign_id: 5,
            advertiser_id: 9,
            previous: Some(8.0),
            score: 5.5,
            computed_at: at,
            sharp_drop: true,
        };
        let notice = quality_score_drop(&change);
        assert_eq!(
            notice.dedup_key,
            "quality-score-drop:5:2026-11-20T10:00:00.500000Z"
        );
        assert_eq!(
            notice.attributes,
            [(
                "advertiser_id".to_owned(),
                Attribute::Number("9".to_owned())
            )]
        );
        assert_eq!(notice.body["previous_score"], 8.0);
    }

    #[test]
    fn a_deactivation_is_keyed_by_advertiser_and_time() {
        let at = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc);
        let month = NaiveDate::from_ymd_opt(2025, 3, 1).expect("a month");
        let notice = advertiser_deactivated(7, month, Some("boom"), at);
        assert_eq!(
            notice.dedup_key,
            "advertiser-deactivated:7:2026-11-20T10:00:00.000000Z"
        );
        assert_eq!(notice.body["month"], "2025-03");
    }
}
