//! budget-settlement (SPEC §3), 03:00 Asia/Seoul: yesterday's Redis day counters
//! (`budget:spent:{campaign}:yyyymmdd`, found with SCAN and read with pipelined GETs) against
//! the DB's deductions for the day (the costs of the day's ad events, in whole won).
//!
//! Each campaign's difference is classified (`match`, `redis_over`, `db_over`,
//! `missing_in_redis`, `missing_in_db`) into `budget_settlement_items`; the items are summed
//! per advertiser into `budget_settlements`; a CSV report goes to S3 at
//! `settlements/YYYY/MM/DD.csv`. Redis is read before anything is written, so if it cannot be
//! reached the job fails cleanly and its retry starts afresh. The day's rows and report are
//! replaced as a whole, so a re-run gives the same final state.

use std::collections::{BTreeMap, HashMap};

use adapters::bootstrap::ScheduledJob;
use adapters::jobs::{JobRun, Reporter};
use adapters::{aws, config, db};
use aws_sdk_s3::primitives::ByteStream;
use chrono::NaiveDate;
use domain::WorkerError;
use domain::budget::{MAX_SPENT, counter_pattern, parse_counter_key};
use domain::calendar::{add_days, kst_day_start};
use domain::settlement::{Classification, classify, micros_to_won};
use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{instrument, warn};

pub const JOB: &str = "budget-settlement";

/// budget-settlement's own settings.
#[derive(Deserialize)]
struct Settings {
    report_bucket: String,
}

pub struct Deps {
    pub reporter: Reporter,
    pub redis: ConnectionManager,
    pub s3: aws_sdk_s3::Client,
    /// `REPORT_BUCKET`
    pub report_bucket: String,
}

impl Deps {
    pub async fn from_env() -> anyhow::Result<Self> {
        let redis = config::RedisConfig::from_env()?;
        let settings: Settings = config::from_env()?;
        let base = ScheduledJob::from_env().await?;
        Ok(Self {
            s3: aws::s3(&base.sdk),
            reporter: base.reporter,
            redis: adapters::redis::connect_lazy(&redis)?,
            report_bucket: settings.report_bucket,
        })
    }
}

/// One campaign's settlement for the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub campaign_id: i64,
    pub advertiser_id: Option<i64>,
    pub redis_spent: Option<i64>,
    pub db_spent: Option<i64>,
    pub classification: Classification,
}

impl Item {
    pub fn difference(&self) -> i64 {
        self.redis_spent.unwrap_or(0) - self.db_spent.unwrap_or(0)
    }
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    JobRun::execute(JOB, payload, &deps.reporter, |run| run_job(run, deps)).await
}

async fn run_job(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let day = run.target_date;
    let mut redis = deps.redis.clone();
    let counters = read_counters(&mut redis, day).await?;
    let db = &deps.reporter.db;
    let items = settle(db, day, &counters.values)
        .await
        .map_err(db::classify)?;
    let report_key = report_key(day);
    deps.s3
        .put_object()
        .bucket(&deps.report_bucket)
        .key(&report_key)
        .content_type("text/csv; charset=utf-8")
        .body(ByteStream::from(report_csv(day, &items).into_bytes()))
        .send()
        .await
        .map_err(|err| {
            WorkerError::retryable(anyhow::Error::new(err).context("write the settlement report"))
        })?;

    let mut by_class: BTreeMap<&str, i64> = Classification::ALL
        .iter()
        .map(|c| (c.as_str(), 0))
        .collect();
    for item in &items {
        *by_class.entry(item.classification.as_str()).or_default() += 1;
    }
    let advertisers = items
        .iter()
        .filter_map(|i| i.advertiser_id)
        .collect::<std::collections::HashSet<_>>()
        .len() as i64;
    let mut counts = vec![
        ("campaigns", items.len() as i64),
        ("advertisers", advertisers),
        ("counters_read", counters.values.len() as i64),
        ("counters_unreadable", counters.unreadable),
        (
            "db_spent",
            saturating_sum(items.iter().filter_map(|i| i.db_spent)),
        ),
        (
            "redis_spent",
            saturating_sum(items.iter().filter_map(|i| i.redis_spent)),
        ),
    ];
    counts.extend(by_class.iter().map(|(name, n)| (*name, *n)));
    let details = json!({
        "report": format!("s3://{}/{report_key}", deps.report_bucket),
        "unknown_campaigns": items.iter().filter(|i| i.advertiser_id.is_none()).map(|i| i.campaign_id).take(50).collect::<Vec<_>>(),
    });
    run.report(&deps.reporter, &counts, details).await
}

fn saturating_sum(values: impl Iterator<Item = i64>) -> i64 {
    values.fold(0, i64::saturating_add)
}

/// The day's counters, by campaign.
#[derive(Debug, Default)]
pub struct Counters {
    pub values: HashMap<i64, i64>,
    /// Keys whose value is not an integer from 0 to [`MAX_SPENT`] (logged and left out).
    pub unreadable: i64,
}

/// Reads every counter of the day. Any Redis failure fails the job before it writes anything.
#[instrument(skip(redis))]
pub async fn read_counters(
    redis: &mut ConnectionManager,
    day: NaiveDate,
) -> Result<Counters, WorkerError> {
    let unreachable =
        |err| WorkerError::retryable(anyhow::Error::new(err).context("read the Redis counters"));
    let keys = adapters::redis::scan_match(redis, &counter_pattern(day))
        .await
        .map_err(unreachable)?;
    let values = adapters::redis::get_pipelined(redis, &keys)
        .await
        .map_err(unreachable)?;
    let mut counters = Counters::default();
    for (key, value) in keys.iter().zip(values) {
        let Some((campaign, _)) = parse_counter_key(key) else {
            continue;
        };
        match value.as_deref().map(str::parse::<i64>) {
            Some(Ok(spent)) if (0..=MAX_SPENT).contains(&spent) => {
                counters.values.insert(campaign, spent);
            }
            Some(Ok(spent)) => {
                warn!(
                    key,
                    spent, "budget counter is out of range; left out of the settlement"
                );
                counters.unreadable += 1;
            }
            // Gone between SCAN and GET (expired): no counter.
            None => {}
            Some(Err(err)) => {
                warn!(key, %err, "budget counter is not an integer; left out of the settlement");
                counters.unreadable += 1;
            }
        }
    }
    Ok(counters)
}

/// Classifies every campaign with a counter or deductions, and replaces the day's items and
/// advertiser rows in one transaction. Returns the items ordered by advertiser and campaign.
#[instrument(skip(db, counters), fields(counters = counters.len()))]
pub async fn settle(
    db: &PgPool,
    day: NaiveDate,
    counters: &HashMap<i64, i64>,
) -> Result<Vec<Item>, sqlx::Error> {
    let deductions = sqlx::query_file!(
        "sql/deductions.sql",
        kst_day_start(day),
        kst_day_start(add_days(day, 1)),
    )
    .fetch_all(db)
    .await?;
    let mut spent: HashMap<i64, (i64, i64)> = deductions
        .into_iter()
        .map(|d| {
            let won = micros_to_won(d.cost_micros);
            (d.campaign_id, (d.advertiser_id, won))
        })
        .collect();
    // Campaigns with a counter but no events today: their advertiser from `campaigns`.
    let counter_only: Vec<i64> = counters
        .keys()
        .filter(|c| !spent.contains_key(c))
        .copied()
        .collect();
    let owners: HashMap<i64, i64> = sqlx::query_file!("sql/owners.sql", &counter_only)
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|o| (o.campaign_id, o.advertiser_id))
        .collect();

    let mut items: Vec<Item> = counters
        .iter()
        .map(|(&campaign, &redis)| {
            let db_side = spent.remove(&campaign);
            Item {
                campaign_id: campaign,
                advertiser_id: db_side
                    .map(|(a, _)| a)
                    .or_else(|| owners.get(&campaign).copied()),
                redis_spent: Some(redis),
                db_spent: db_side.map(|(_, won)| won),
                classification: classify(Some(redis), db_side.map(|(_, won)| won)),
            }
        })
        .collect();
    items.extend(spent.into_iter().map(|(campaign, (advertiser, won))| Item {
        campaign_id: campaign,
        advertiser_id: Some(advertiser),
        redis_spent: None,
        db_spent: Some(won),
        classification: classify(None, Some(won)),
    }));
    items.sort_by_key(|i| (i.advertiser_id.is_none(), i.advertiser_id, i.campaign_id));

    let mut tx = db.begin().await?;
    sqlx::query_file!("sql/clear_items.sql", day)
        .execute(&mut *tx)
        .await?;
    let column = |value: fn(&Item) -> Option<i64>| items.iter().map(value).collect::<Vec<_>>();
    sqlx::query_file!(
        "sql/insert_items.sql",
        day,
        &items.iter().map(|i| i.campaign_id).collect::<Vec<_>>(),
        &column(|i| i.advertiser_id) as &[Option<i64>],
        &column(|i| i.redis_spent) as &[Option<i64>],
        &column(|i| i.db_spent) as &[Option<i64>],
        &items.iter().map(Item::difference).collect::<Vec<_>>(),
        &items
            .iter()
            .map(|i| i.classification.as_str())
            .collect::<Vec<_>>() as &[&str],
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query_file!("sql/clear_settlements.sql", day)
        .execute(&mut *tx)
        .await?;
    sqlx::query_file!("sql/insert_settlements.sql", day)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(items)
}

/// `settlements/YYYY/MM/DD.csv`
pub fn report_key(day: NaiveDate) -> String {
    format!("settlements/{}.csv", day.format("%Y/%m/%d"))
}

/// One line per campaign, advertiser by advertiser; an empty field is a side with nothing.
pub fn report_csv(day: NaiveDate, items: &[Item]) -> String {
    fn field(value: Option<i64>) -> String {
        value.map(|v| v.to_string()).unwrap_or_default()
    }
    let mut csv = String::from(
        "settle_date,advertiser_id,campaign_id,redis_spent,db_spent,difference,classification\n",
    );
    for item in items {
        csv.push_str(&format!(
            "{day},{},{},{},{},{},{}\n",
            field(item.advertiser_id),
            item.campaign_id,
            field(item.redis_spent),
            field(item.db_spent),
            item.difference(),
            item.classification.as_str(),
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_has_a_line_per_campaign_and_empty_missing_sides() {
        let day: NaiveDate = "2026-11-20".parse().expect("date");
        assert_eq!(report_key(day), "settlements/2026/11/20.csv");
        let items = [
            Item {
                campaign_id: 1,
                advertiser_id: Some(7),
                redis_spent: Some(120),
                db_spent: Some(100),
                classification: Classification::RedisOver,
            },
            Item {
                campaign_id: 2,
                advertiser_id: None,
                redis_spent: Some(5),
                db_spent: None,
                classification: Classification::MissingInDb,
            },
        ];
        assert_eq!(
            report_csv(day, &items),
            "settle_date,advertiser_id,campaign_id,redis_spent,db_spent,difference,classification\n\
             2026-11-20,7,1,120,100,20,redis_over\n\
             2026-11-20,,2,5,,5,missing_in_db\n"
        );
    }
}
