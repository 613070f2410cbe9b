//! The CDP backfill against the real stack: the orchestrator and the worker on a database,
//! jobs queue (with its DLQ), bucket and operators' topic of the test's own. The SQS event
//! source's part is played by the fixture (`Cdp::take_jobs`, `Cdp::work`), so a test decides
//! when a message is delivered, twice, or after its delay.

use std::collections::BTreeSet;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use domain::backfill::{Dataset, current_month, device_key, object_key};
use domain::calendar::{add_months, kst_date, kst_day_start, sub_days, sub_months};
use integration_tests::{Cdp, TcpProxy, failed_ids};
use parquet::file::reader::{FileReader as _, SerializedFileReader};
use parquet::record::{Row, RowAccessor as _};
use serde_json::Value;

fn today() -> NaiveDate {
    kst_date(Utc::now())
}

fn yesterday() -> NaiveDate {
    sub_days(today(), 1)
}

/// Daily aggregates of one campaign of `advertiser` for every day in [`first`, `last`]: 1,000
/// impressions, 50 clicks, 5 conversions and 10 won a day.
async fn daily_stats(
    cdp: &Cdp,
    advertiser: i64,
    first: NaiveDate,
    last: NaiveDate,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO campaign_daily_stats
             (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions, cost_micros, hours)
         SELECT $1 * 10, d::date, $1, 1000, 50, 5, 10000000, 24
           FROM generate_series($2::date, $3::date, INTERVAL '1 day') AS d",
    )
    .bind(advertiser)
    .bind(first)
    .bind(last)
    .execute(&cdp.db.pool)
    .await?;
    Ok(())
}

/// Raw events of `advertiser` yesterday: per device, `n` impressions and one click.
async fn raw_events(cdp: &Cdp, advertiser: i64, devices: &[(&str, i64)]) -> anyhow::Result<()> {
    let noon = kst_day_start(yesterday()) + TimeDelta::hours(12);
    for (device, impressions) in devices {
        sqlx::query(
            "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type, cost_micros, device_id)
             SELECT gen_random_uuid(), $1 + make_interval(secs => n), $2 * 10, $2,
                    CASE WHEN n = 0 THEN 'click' ELSE 'impression' END, 1000, $3
               FROM generate_series(0, $4) AS n",
        )
        .bind(noon)
        .bind(advertiser)
        .bind(device)
        .bind(impressions)
        .execute(&cdp.db.pool)
        .await?;
    }
    Ok(())
}

fn rows(bytes: Vec<u8>) -> anyhow::Result<Vec<Row>> {
    let reader = SerializedFileReader::new(Bytes::from(bytes))?;
    Ok(reader.get_row_iter(None)?.collect::<Result<_, _>>()?)
}

async fn one_value(cdp: &Cdp, sql: &str, advertiser: i64) -> anyhow::Result<Value> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(advertiser)
        .fetch_one(&cdp.db.pool)
        .await?)
}

#[tokio::test]
async fn a_new_advertiser_backfills_24_months_oldest_first_then_becomes_existing()
-> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(1, "NEW").await?;
    daily_stats(&cdp, 1, sub_months(current, 24), yesterday()).await?;
    raw_events(&cdp, 1, &[("device-a", 3), ("device-b", 1)]).await?;

    let tick = cdp.run("tick").await?;
    assert_eq!(
        (tick["started"].as_i64(), tick["queued"].as_i64()),
        (Some(1), Some(1))
    );
    let months = cdp.months(1).await?;
    assert_eq!(months.len(), 24);
    assert_eq!(months[0].1, "QUEUED", "the oldest month goes first");
    assert!(
        months[1..].iter().all(|m| m.1 == "PENDING"),
        "one at a time"
    );

    // Each completed month queues the next, then the current month once it is EXISTING.
    cdp.work_until_empty(&cdp.worker()).await?;
    let months = cdp.months(1).await?;
    assert_eq!(months.len(), 25);
    assert!(months.iter().all(|m| m.1 == "COMPLETED"), "{months:?}");
    let in_completion_order: Vec<NaiveDate> = sqlx::query_scalar(
        "SELECT month FROM cdp_months WHERE advertiser_id = 1 ORDER BY completed_at",
    )
    .fetch_all(&cdp.db.pool)
    .await?;
    let oldest_first: Vec<NaiveDate> = months.iter().map(|m| m.0).collect();
    assert_eq!(in_completion_order, oldest_first);
    let advertiser = one_value(
        &cdp,
        "SELECT json_build_object('type', advertiser_type, 'done', backfill_completed,
                'last', last_completed_month) FROM advertisers WHERE advertiser_id = $1",
        1,
    )
    .await?;
    assert_eq!(advertiser["type"], "EXISTING");
    assert_eq!(advertiser["done"], true);
    assert_eq!(advertiser["last"], current.to_string());

    // The oldest month: every day's facts, no audience (its raw events are long gone).
    let oldest = months[0].0;
    let exports: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT dataset, status, records FROM cdp_exports
          WHERE advertiser_id = 1 AND month = $1 ORDER BY dataset",
    )
    .bind(oldest)
    .fetch_all(&cdp.db.pool)
    .await?;
    let days = (add_months(oldest, 1) - oldest).num_days();
    assert_eq!(
        exports,
        [
            ("audience".to_owned(), "not_retained".to_owned(), 0),
            ("performance".to_owned(), "written".to_owned(), days)
        ]
    );
    let performance = rows(
        cdp.object(&object_key(1, oldest, Dataset::Performance))
            .await?,
    )?;
    assert_eq!(performance.len() as i64, days);
    let first = &performance[0];
    assert_eq!(first.get_long(0)?, 10, "campaign");
    assert_eq!(first.get_long(2)?, 1000, "impressions");
    assert_eq!(first.get_double(6)?, 0.05, "CTR");
    assert_eq!(first.get_double(7)?, 0.1, "CVR");
    assert_eq!(first.get_double(8)?, 2_000_000.0, "CPA in micros");

    // The current month: audience facts per pseudonymous device.
    let audience = rows(
        cdp.object(&object_key(1, current, Dataset::Audience))
            .await?,
    )?;
    let mut devices: Vec<(String, i64, i64)> = audience
        .iter()
        .map(|r| Ok((r.get_string(0)?.clone(), r.get_long(1)?, r.get_long(2)?)))
        .collect::<anyhow::Result<_>>()?;
    devices.sort();
    let mut expected = vec![
        (device_key(1, "device-a"), 3, 1),
        (device_key(1, "device-b"), 1, 1),
    ];
    expected.sort();
    assert_eq!(devices, expected);
    let keys = cdp.aws.object_keys().await?;
    assert_eq!(
        keys.iter()
            .filter(|k| k.ends_with("performance.parquet"))
            .count(),
        25
    );
    assert!(
        keys.iter()
            .all(|k| k.starts_with("cdp/advertiser_id=1/month="))
    );
    Ok(())
}

#[tokio::test]
async fn existing_advertisers_run_their_current_month_again_only_when_its_data_changed()
-> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    for advertiser in [2, 3] {
        cdp.advertiser(advertiser, "EXISTING").await?;
        daily_stats(&cdp, advertiser, current, yesterday()).await?;
    }
    let tick = cdp.run("tick").await?;
    assert_eq!(tick["queued"], 2);
    cdp.work_until_empty(&cdp.worker()).await?;
    for advertiser in [2, 3] {
        assert_eq!(
            cdp.months(advertiser).await?,
            [(current, "COMPLETED".to_owned(), 0)]
        );
    }
    let tick = cdp.run("tick").await?;
    assert_eq!(
        (tick["queued"].as_i64(), tick["idle"].as_i64()),
        (Some(0), Some(2))
    );

    // The nightly rollup rewrites a day of advertiser 2.
    sqlx::query("UPDATE campaign_daily_stats SET rolled_up_at = now() WHERE advertiser_id = 2")
        .execute(&cdp.db.pool)
        .await?;
    let tick = cdp.run("tick").await?;
    assert_eq!(tick["queued"], 1);
    let jobs = cdp.take_jobs().await?;
    assert_eq!(jobs.len(), 1);
    assert!(
        jobs[0]
            .body
            .as_deref()
            .unwrap_or_default()
            .contains("\"advertiser_id\":2")
    );
    Ok(())
}

#[tokio::test]
async fn two_orchestrator_runs_at_once_queue_each_month_once() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    for advertiser in 100..140 {
        cdp.advertiser(advertiser, "NEW").await?;
    }
    for _ in 0..2 {
        let (a, b) = tokio::join!(cdp.run("tick"), cdp.run("tick"));
        let (a, b) = (a?, b?);
        assert!(
            a["queued"].as_i64().unwrap_or(0) + b["queued"].as_i64().unwrap_or(0) <= 40,
            "{a} {b}"
        );
    }
    let jobs = cdp.take_jobs().await?;
    assert_eq!(jobs.len(), 40, "one month per advertiser, once");
    let advertisers: BTreeSet<String> = jobs
        .iter()
        .filter_map(|j| serde_json::from_str::<Value>(j.body.as_deref()?).ok())
        .map(|body| body["advertiser_id"].to_string())
        .collect();
    assert_eq!(advertisers.len(), 40);
    let months: i64 = sqlx::query_scalar("SELECT count(*) FROM cdp_months")
        .fetch_one(&cdp.db.pool)
        .await?;
    assert_eq!(months, 40 * 24, "24 months each, created once");
    Ok(())
}

#[tokio::test]
async fn the_same_jobs_message_twice_or_at_once_runs_the_month_once() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(4, "EXISTING").await?;
    daily_stats(&cdp, 4, current, yesterday()).await?;
    cdp.aws
        .s3
        .put_bucket_versioning()
        .bucket(&cdp.aws.bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    let versions = || async {
        let listed = cdp
            .aws
            .s3
            .list_object_versions()
            .bucket(&cdp.aws.bucket)
            .prefix(object_key(4, current, Dataset::Performance))
            .send()
            .await?;
        anyhow::Ok(listed.versions().len())
    };
    let worker = cdp.worker();

    cdp.run("tick").await?;
    let job = cdp.take_jobs().await?.pop().context_free()?;
    let mut again = job.clone();
    again.message_id = Some("redelivered".to_owned());
    let response = cdp.work(&worker, vec![job.clone()]).await;
    assert!(response.batch_item_failures.is_empty());
    let response = cdp.work(&worker, vec![again]).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(versions().await?, 1, "one run, one file");

    // An operator asks again; the message arrives twice at once.
    cdp.backfill(cdp.db.pool.clone()).trigger(4).await?;
    let job = cdp.take_jobs().await?.pop().context_free()?;
    let other = cdp.worker();
    let (a, b) = tokio::join!(
        cdp.work(&worker, vec![job.clone()]),
        cdp.work(&other, vec![job])
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    assert_eq!(versions().await?, 2, "the second delivery did nothing");
    assert_eq!(cdp.months(4).await?, [(current, "COMPLETED".to_owned(), 0)]);
    Ok(())
}

/// `Option::context` without importing anyhow's trait in every test.
trait ContextFree<T> {
    fn context_free(self) -> anyhow::Result<T>;
}

impl<T> ContextFree<T> for Option<T> {
    fn context_free(self) -> anyhow::Result<T> {
        self.ok_or_else(|| anyhow::anyhow!("expected a value"))
    }
}

async fn next_attempt(cdp: &Cdp, advertiser: i64) -> anyhow::Result<(i32, DateTime<Utc>, String)> {
    Ok(sqlx::query_as(
        "SELECT retry_count, next_attempt_at, error FROM cdp_months WHERE advertiser_id = $1",
    )
    .bind(advertiser)
    .fetch_one(&cdp.db.pool)
    .await?)
}

#[tokio::test]
async fn a_month_failing_twice_then_succeeding_is_retried_after_1_then_2_minutes()
-> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(5, "EXISTING").await?;
    daily_stats(&cdp, 5, current, yesterday()).await?;
    // S3 refuses a bucket that does not exist: the month fails.
    let failing = cdp.worker_on(cdp.db.pool.clone(), "no-such-bucket-cdp");

    cdp.run("tick").await?;
    let first = cdp.take_jobs().await?;
    for (retry, minutes) in [(1, 1), (2, 2)] {
        let job = if retry == 1 {
            first.clone()
        } else {
            vec![cdp.queued_job(5, current).await?]
        };
        let before = Utc::now();
        let response = cdp.work(&failing, job).await;
        let after = Utc::now();
        assert!(
            response.batch_item_failures.is_empty(),
            "a failed month is recorded, not retried by SQS"
        );
        let (count, next, error) = next_attempt(&cdp, 5).await?;
        assert_eq!(count, retry);
        // The failure was recorded between `before` and `after`; its retry is due n minutes on.
        let backoff = TimeDelta::minutes(minutes);
        assert!(
            before + backoff <= next && next <= after + backoff,
            "retry {retry} due at {next}, failed between {before} and {after}"
        );
        assert!(error.contains("CDP file"), "{error}");
        // The retry is queued already (with an SQS delay until it is due).
        assert_eq!(cdp.months(5).await?[0].1, "QUEUED");
    }
    let response = cdp
        .work(&cdp.worker(), vec![cdp.queued_job(5, current).await?])
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(cdp.months(5).await?, [(current, "COMPLETED".to_owned(), 0)]);
    Ok(())
}

#[tokio::test]
async fn a_month_failing_four_times_deactivates_only_its_advertiser_and_tells_operators()
-> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    for advertiser in [6, 7] {
        cdp.advertiser(advertiser, "EXISTING").await?;
        daily_stats(&cdp, advertiser, current, yesterday()).await?;
    }
    let failing = cdp.worker_on(cdp.db.pool.clone(), "no-such-bucket-cdp");
    cdp.run("tick").await?;
    let jobs = cdp.take_jobs().await?;
    let (mine, other): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| {
        j.body
            .as_deref()
            .unwrap_or_default()
            .contains("\"advertiser_id\":6")
    });
    assert!(
        cdp.work(&cdp.worker(), other)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert!(
        cdp.work(&failing, mine)
            .await
            .batch_item_failures
            .is_empty()
    );
    for _ in 0..3 {
        let job = cdp.queued_job(6, current).await?;
        assert!(
            cdp.work(&failing, vec![job])
                .await
                .batch_item_failures
                .is_empty()
        );
    }
    assert_eq!(cdp.months(6).await?, [(current, "FAILED".to_owned(), 4)]);
    let active: Vec<(i64, bool, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT advertiser_id, active, deactivated_reason, deactivated_by
           FROM advertisers ORDER BY advertiser_id",
    )
    .fetch_all(&cdp.db.pool)
    .await?;
    assert_eq!(active[0].0, 6);
    assert!(!active[0].1);
    assert_eq!(
        active[0].3, None,
        "no operator: an exhausted month deactivated it"
    );
    assert!(
        active[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("after 3 retries")
    );
    assert_eq!((active[1].0, active[1].1), (7, true));
    assert_eq!(cdp.months(7).await?, [(current, "COMPLETED".to_owned(), 0)]);
    let notices = cdp.aws.drain("operators").await?;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["type"], "advertiser_deactivated");
    assert_eq!(notices[0]["advertiser_id"], 6);
    assert!(
        notices[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("CDP file")
    );

    // A tick leaves the inactive advertiser alone; activating it gives its month another go.
    let tick = cdp.run("tick").await?;
    assert_eq!(
        (tick["queued"].as_i64(), tick["deactivated"].as_i64()),
        (Some(0), Some(0))
    );
    let backfill = cdp.backfill(cdp.db.pool.clone());
    assert!(backfill.set_active(6, true, "", "ops").await?);
    assert_eq!(cdp.months(6).await?[0].1, "QUEUED");
    let job = cdp.take_jobs().await?;
    assert!(
        cdp.work(&cdp.worker(), job)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(cdp.months(6).await?, [(current, "COMPLETED".to_owned(), 0)]);
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_month_is_failed_as_stale_and_retried() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    for advertiser in [8, 9, 16] {
        cdp.advertiser(advertiser, "EXISTING").await?;
        daily_stats(&cdp, advertiser, current, yesterday()).await?;
    }
    cdp.run("tick").await?;
    let jobs = cdp.take_jobs().await?;
    assert_eq!(jobs.len(), 3);
    // Two workers claimed their month and died: one 31 minutes ago, one 11. The third month's
    // message was lost 5 hours ago (SQS gave up on it) and no worker ever started it.
    for (advertiser, minutes) in [(8, 31), (9, 11)] {
        sqlx::query(
            "UPDATE cdp_months SET state = 'RUNNING', started_at = now() - make_interval(mins => $2)
              WHERE advertiser_id = $1",
        )
        .bind(advertiser)
        .bind(minutes)
        .execute(&cdp.db.pool)
        .await?;
    }
    sqlx::query(
        "UPDATE cdp_months SET queued_at = now() - INTERVAL '5 hours' WHERE advertiser_id = 16",
    )
    .execute(&cdp.db.pool)
    .await?;
    let cleanup = cdp.run("clean_up").await?;
    assert_eq!(
        (cleanup["stale"].as_i64(), cleanup["lost"].as_i64()),
        (Some(1), Some(1)),
        "only the month running past 30 minutes is stale: {cleanup}"
    );
    let (count, _, error) = next_attempt(&cdp, 8).await?;
    assert_eq!(count, 1);
    assert!(
        error.starts_with("stale: running for more than 30 minutes"),
        "{error}"
    );
    assert_eq!(
        cdp.months(8).await?[0].1,
        "QUEUED",
        "retried under a new token"
    );
    assert_eq!(
        cdp.months(16).await?,
        [(current, "QUEUED".to_owned(), 0)],
        "a lost message is not the month's failure"
    );

    // The dead workers' messages come back. Advertiser 8's and 16's tokens are void now;
    // advertiser 9's month is past the lease (the function's timeout), so its message runs it.
    let response = cdp.work(&cdp.worker(), jobs).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(cdp.months(8).await?[0].1, "QUEUED");
    assert_eq!(cdp.months(16).await?[0].1, "QUEUED");
    assert_eq!(cdp.months(9).await?, [(current, "COMPLETED".to_owned(), 0)]);
    let retries = vec![
        cdp.queued_job(8, current).await?,
        cdp.queued_job(16, current).await?,
    ];
    assert!(
        cdp.work(&cdp.worker(), retries)
            .await
            .batch_item_failures
            .is_empty()
    );
    for advertiser in [8, 16] {
        assert_eq!(
            cdp.months(advertiser).await?,
            [(current, "COMPLETED".to_owned(), 0)]
        );
    }
    Ok(())
}

#[tokio::test]
async fn bad_messages_are_refused_and_the_good_ones_in_their_batch_complete() -> anyhow::Result<()>
{
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(10, "EXISTING").await?;
    daily_stats(&cdp, 10, current, yesterday()).await?;
    cdp.run("tick").await?;
    let mut batch = cdp.take_jobs().await?;
    let token = "0b7e7a3c-3f7e-4f4e-9a55-2b8a2c6a1f00";
    let bad = [
        ("not-json", "{".to_owned()),
        ("array", "[]".to_owned()),
        (
            "missing-token",
            r#"{"advertiser_id": 10, "month": "2026-01"}"#.to_owned(),
        ),
        (
            "wrong-type",
            format!(r#"{{"advertiser_id": "10", "month": "2026-01", "token": "{token}"}}"#),
        ),
        (
            "negative",
            format!(r#"{{"advertiser_id": -1, "month": "2026-01", "token": "{token}"}}"#),
        ),
        (
            "injection",
            format!(
                r#"{{"advertiser_id": 10, "month": "2026-01'; DROP TABLE advertisers;--", "token": "{token}"}}"#
            ),
        ),
        (
            "unknown-field",
            format!(r#"{{"advertiser_id": 10, "month": "2026-01", "token": "{token}", "x": 1}}"#),
        ),
        (
            "oversized",
            format!(r#"{{"pad": "{}"}}"#, "x".repeat(300_000)),
        ),
    ];
    for (id, body) in &bad {
        batch.push(cdp.message(id, body));
    }
    let mut no_body = cdp.message("no-body", "");
    no_body.body = None;
    batch.push(no_body);
    // Well-formed, but no month is queued under it: nothing to do, not an error.
    batch.push(cdp.message(
        "stranger",
        &format!(r#"{{"advertiser_id": 999, "month": "2026-01", "token": "{token}"}}"#),
    ));
    let response = cdp.work(&cdp.worker(), batch).await;
    let mut expected: Vec<String> = bad.iter().map(|(id, _)| (*id).to_owned()).collect();
    expected.push("no-body".to_owned());
    expected.sort();
    assert_eq!(failed_ids(&response), expected);
    assert_eq!(
        cdp.months(10).await?,
        [(current, "COMPLETED".to_owned(), 0)]
    );
    let advertisers: i64 = sqlx::query_scalar("SELECT count(*) FROM advertisers")
        .fetch_one(&cdp.db.pool)
        .await?;
    assert_eq!(advertisers, 1);
    Ok(())
}

#[tokio::test]
async fn a_database_outage_mid_batch_hands_the_months_back_and_loses_none() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    for advertiser in 11..14 {
        cdp.advertiser(advertiser, "EXISTING").await?;
        daily_stats(&cdp, advertiser, current, yesterday()).await?;
    }
    cdp.run("tick").await?;
    let jobs = cdp.take_jobs().await?;
    assert_eq!(jobs.len(), 3);
    let proxy = TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let worker = cdp.worker_on(proxy.pool_for(&cdp.db), &cdp.aws.bucket);
    proxy.cut();
    let response = cdp.work(&worker, jobs.clone()).await;
    assert_eq!(
        response.batch_item_failures.len(),
        3,
        "every month handed back to SQS"
    );
    proxy.restore();
    let response = cdp.work(&worker, jobs).await;
    assert!(response.batch_item_failures.is_empty());
    for advertiser in 11..14 {
        assert_eq!(
            cdp.months(advertiser).await?,
            [(current, "COMPLETED".to_owned(), 0)]
        );
    }
    Ok(())
}

#[tokio::test]
async fn processing_a_month_again_writes_identical_objects_and_rows() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(15, "EXISTING").await?;
    daily_stats(&cdp, 15, current, yesterday()).await?;
    raw_events(
        &cdp,
        15,
        &[("device-x", 5), ("device-y", 2), ("device-z", 9)],
    )
    .await?;
    let summary = || async {
        let rows: Vec<(String, String, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT dataset, status, records, bytes, sha256 FROM cdp_exports
              WHERE advertiser_id = 15 ORDER BY dataset",
        )
        .fetch_all(&cdp.db.pool)
        .await?;
        let mut objects = Vec::new();
        for dataset in [Dataset::Audience, Dataset::Performance] {
            objects.push(cdp.object(&object_key(15, current, dataset)).await?);
        }
        anyhow::Ok((rows, objects))
    };
    cdp.run("tick").await?;
    cdp.work_until_empty(&cdp.worker()).await?;
    let first = summary().await?;
    assert_eq!(first.0[0].2, 3, "three devices");
    assert_eq!(
        first.0[0].4.as_deref(),
        Some(sha256_hex(&first.1[0]).as_str()),
        "the summary's checksum is the object's"
    );
    cdp.backfill(cdp.db.pool.clone()).trigger(15).await?;
    cdp.work_until_empty(&cdp.worker()).await?;
    let second = summary().await?;
    assert_eq!(first, second);
    Ok(())
}

/// README, "The CDP dataset": rows the platform cannot vouch for (a negative count, more
/// clicks than impressions) are left out and counted as the month's `failed_records` — in
/// the audience as in the performance rows. Planted: one device with 3 clicks and no
/// impression, one campaign-day with more clicks than impressions, beside good ones.
#[tokio::test]
async fn devices_and_days_it_cannot_vouch_for_are_left_out_and_counted() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(16, "EXISTING").await?;
    daily_stats(&cdp, 16, current, yesterday()).await?;
    sqlx::query(
        "INSERT INTO campaign_daily_stats
             (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions, cost_micros, hours)
         VALUES (161, $1, 16, 2, 7, 0, 0, 24)",
    )
    .bind(yesterday())
    .execute(&cdp.db.pool)
    .await?;
    raw_events(&cdp, 16, &[("device-good", 4)]).await?;
    let noon = kst_day_start(yesterday()) + TimeDelta::hours(12);
    sqlx::query(
        "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type, cost_micros, device_id)
         SELECT gen_random_uuid(), $1 + make_interval(secs => n), 160, 16, 'click', 1000, 'device-clicks-only'
           FROM generate_series(1, 3) AS n",
    )
    .bind(noon)
    .execute(&cdp.db.pool)
    .await?;
    // README: events without a device count toward no device.
    sqlx::query(
        "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type, cost_micros, device_id)
         SELECT gen_random_uuid(), $1 + make_interval(secs => n), 160, 16, 'impression', 1000, NULL
           FROM generate_series(1, 5) AS n",
    )
    .bind(noon)
    .execute(&cdp.db.pool)
    .await?;
    cdp.run("tick").await?;
    cdp.work_until_empty(&cdp.worker()).await?;

    let audience = rows(
        cdp.object(&object_key(16, current, Dataset::Audience))
            .await?,
    )?;
    let devices: Vec<String> = audience
        .iter()
        .map(|r| Ok(r.get_string(0)?.clone()))
        .collect::<anyhow::Result<_>>()?;
    // device_key(16, "device-good"), as Python's hashlib computes it.
    assert_eq!(devices, ["cf7b465a288365cf8fec9462f90fb003"]);
    let performance = rows(
        cdp.object(&object_key(16, current, Dataset::Performance))
            .await?,
    )?;
    assert!(
        performance.iter().all(|r| r.get_long(0).ok() == Some(160)),
        "the campaign-day with 7 clicks and 2 impressions is not exported"
    );
    let days = (yesterday() - current).num_days() + 1;
    assert_eq!(performance.len() as i64, days);
    // README: Parquet with zstd.
    for dataset in [Dataset::Performance, Dataset::Audience] {
        let bytes = cdp.object(&object_key(16, current, dataset)).await?;
        let reader = SerializedFileReader::new(Bytes::from(bytes))?;
        let column = reader.metadata().row_group(0).column(0).compression();
        assert!(
            matches!(column, parquet::basic::Compression::ZSTD(_)),
            "{column:?}"
        );
    }
    let failed: i64 = sqlx::query_scalar(
        "SELECT failed_records FROM cdp_months WHERE advertiser_id = 16 AND month = $1",
    )
    .bind(current)
    .fetch_one(&cdp.db.pool)
    .await?;
    assert_eq!(failed, 2, "one device and one campaign-day");
    Ok(())
}

/// docs/functions/cdp-backfill.md: a month with more records than `CDP_MAX_RECORDS` fails
/// (counted as a retry, queued with its delay), rather than write a file it cannot vouch
/// for. Planted: 11 campaign-days yesterday under a limit of 10.
#[tokio::test]
async fn a_month_over_its_record_limit_fails_and_writes_nothing() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    cdp.advertiser(17, "EXISTING").await?;
    sqlx::query(
        "INSERT INTO campaign_daily_stats
             (campaign_id, stat_date, advertiser_id, impressions, clicks, conversions, cost_micros, hours)
         SELECT 1700 + c, $1, 17, 1000, 50, 5, 10000000, 24 FROM generate_series(1, 11) AS c",
    )
    .bind(yesterday())
    .execute(&cdp.db.pool)
    .await?;
    cdp.run("tick").await?;
    let mut worker = cdp.worker();
    worker.limits.max_records = 10;
    cdp.work_until_empty(&worker).await?;
    // Failed once, its retry queued with its delay, the reason recorded.
    let months = cdp.months(17).await?;
    assert_eq!(
        months
            .iter()
            .map(|m| (m.1.as_str(), m.2))
            .collect::<Vec<_>>(),
        [("QUEUED", 1)],
        "{months:?}"
    );
    let error: String = sqlx::query_scalar("SELECT error FROM cdp_months WHERE advertiser_id = 17")
        .fetch_one(&cdp.db.pool)
        .await?;
    assert!(error.contains("CDP_MAX_RECORDS"), "{error}");
    assert!(
        cdp.aws
            .object_keys()
            .await?
            .iter()
            .all(|k| !k.starts_with("cdp/advertiser_id=17/")),
        "no file of the month"
    );
    Ok(())
}

/// docs/functions/cdp-backfill.md: a month run again after its raw events are gone records
/// `not_retained` and deletes the audience file an earlier run wrote (a file must not stand
/// beside a summary that says there is none). Planted: a month five months back with a
/// written audience row and its object.
#[tokio::test]
async fn a_month_no_longer_retained_loses_its_old_audience_file() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let month = sub_months(current_month(today()), 5);
    let key = object_key(18, month, Dataset::Audience);
    cdp.advertiser(18, "EXISTING").await?;
    daily_stats(&cdp, 18, month, sub_days(add_months(month, 1), 1)).await?;
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, claim_token, queued_at)
         VALUES (18, $1, 'QUEUED', gen_random_uuid(), now())",
    )
    .bind(month)
    .execute(&cdp.db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO cdp_exports (advertiser_id, month, dataset, status, s3_key, records, bytes, sha256)
         VALUES (18, $1, 'audience', 'written', $2, 1, 3, repeat('0', 64))",
    )
    .bind(month)
    .bind(&key)
    .execute(&cdp.db.pool)
    .await?;
    cdp.aws
        .s3
        .put_object()
        .bucket(&cdp.aws.bucket)
        .key(&key)
        .body(Vec::from(&b"old"[..]).into())
        .send()
        .await?;
    let job = cdp.queued_job(18, month).await?;
    let response = cdp.work(&cdp.worker(), vec![job]).await;
    assert!(response.batch_item_failures.is_empty());
    let keys = cdp.aws.object_keys().await?;
    assert!(!keys.contains(&key), "{keys:?}");
    assert!(keys.contains(&object_key(18, month, Dataset::Performance)));
    let status: String = sqlx::query_scalar(
        "SELECT status FROM cdp_exports WHERE advertiser_id = 18 AND dataset = 'audience'",
    )
    .fetch_one(&cdp.db.pool)
    .await?;
    assert_eq!(status, "not_retained");
    Ok(())
}

/// docs/functions/cdp-backfill.md: `trigger` runs a failed month at once, without its
/// backoff. Planted: a month failed once whose retry is due in ten minutes.
#[tokio::test]
async fn a_trigger_runs_a_failed_month_without_its_backoff() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(19, "EXISTING").await?;
    daily_stats(&cdp, 19, current, yesterday()).await?;
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, retry_count, error, next_attempt_at)
         VALUES (19, $1, 'FAILED', 1, 'S3 was down', now() + interval '10 minutes')",
    )
    .bind(current)
    .execute(&cdp.db.pool)
    .await?;
    cdp.run("tick").await?;
    assert!(
        cdp.take_jobs().await?.is_empty(),
        "the tick waits for the backoff"
    );
    cdp.backfill(cdp.db.pool.clone()).trigger(19).await?;
    let jobs = cdp.take_jobs().await?;
    assert_eq!(jobs.len(), 1, "queued at once, visible without a delay");
    let response = cdp.work(&cdp.worker(), jobs).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(cdp.months(19).await?[0].1, "COMPLETED");
    Ok(())
}

/// docs/functions/cdp-backfill.md: when an EXISTING advertiser's current month is first
/// created, the missing months between its latest month and it are created too — at most 24.
/// Planted: a latest month 30 months back.
#[tokio::test]
async fn at_most_24_missing_months_are_created() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(32, "EXISTING").await?;
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, claim_token, started_at, completed_at)
         VALUES (32, $1, 'COMPLETED', gen_random_uuid(), now(), now())",
    )
    .bind(sub_months(current, 30))
    .execute(&cdp.db.pool)
    .await?;
    cdp.run("tick").await?;
    let created: Vec<NaiveDate> = cdp
        .months(32)
        .await?
        .into_iter()
        .map(|m| m.0)
        .filter(|&m| m > sub_months(current, 30))
        .collect();
    // The current month and the 24 before it at the most; never a month the cap leaves out.
    assert!(created.len() <= 25, "{} months created", created.len());
    assert_eq!(created.last(), Some(&current));
    assert!(
        created.iter().all(|&m| m >= sub_months(current, 24)),
        "{created:?}"
    );
    Ok(())
}

/// docs/functions/cdp-backfill.md: deactivating stops the advertiser, but a month already in
/// flight finishes, and none follows it. Planted: a NEW advertiser's first month queued, then
/// the advertiser deactivated before the worker takes it.
#[tokio::test]
async fn a_month_in_flight_finishes_after_deactivation_and_none_follows() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    cdp.advertiser(33, "NEW").await?;
    daily_stats(&cdp, 33, sub_months(current, 24), yesterday()).await?;
    cdp.run("tick").await?;
    let backfill = cdp.backfill(cdp.db.pool.clone());
    assert!(backfill.set_active(33, false, "paused", "ops").await?);
    cdp.work_until_empty(&cdp.worker()).await?;
    let months = cdp.months(33).await?;
    assert_eq!(months[0].1, "COMPLETED", "the month in flight finished");
    assert!(
        months[1..].iter().all(|m| m.1 == "PENDING"),
        "nothing followed it: {months:?}"
    );
    cdp.run("tick").await?;
    assert!(cdp.take_jobs().await?.is_empty(), "no tick for it either");
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn manual_controls_add_retry_activate_and_deactivate() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let backfill = cdp.backfill(cdp.db.pool.clone());
    assert!(backfill.add_advertiser(20, "Newcomer").await?);
    assert!(
        !backfill.add_advertiser(20, "Newcomer").await?,
        "adding again changes nothing"
    );
    let months = cdp.months(20).await?;
    assert_eq!(months.len(), 24, "the backfill starts at once");
    assert_eq!(months[0].1, "QUEUED");
    assert_eq!(cdp.take_jobs().await?.len(), 1);
    assert!(
        !backfill.retry_month(20, months[0].0).await?,
        "only a FAILED month is retried"
    );
    assert!(
        backfill
            .set_active(20, false, "paused by an operator", "ops")
            .await?
    );
    assert!(
        !backfill.set_active(21, false, "", "ops").await?,
        "no such advertiser"
    );
    let tick = cdp.run("tick").await?;
    assert_eq!(tick["queued"], 0);
    // A month an operator retries goes at once, backoff or not.
    sqlx::query(
        "UPDATE cdp_months SET state = 'FAILED', retry_count = 2, next_attempt_at = now() + INTERVAL '1 hour'
          WHERE advertiser_id = 20 AND state = 'QUEUED'",
    )
    .execute(&cdp.db.pool)
    .await?;
    assert!(backfill.set_active(20, true, "", "ops").await?);
    assert!(backfill.retry_month(20, months[0].0).await?);
    assert_eq!(
        cdp.months(20).await?[0],
        (months[0].0, "QUEUED".to_owned(), 0)
    );
    Ok(())
}

#[tokio::test]
async fn months_that_went_by_are_caught_up_oldest_first() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let current = current_month(today());
    let three_back = sub_months(current, 3);
    cdp.advertiser(30, "EXISTING").await?;
    daily_stats(&cdp, 30, three_back, yesterday()).await?;
    // Its last run was three months ago (it was inactive since, or its backfill ended then).
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, claim_token, started_at, completed_at)
         VALUES (30, $1, 'COMPLETED', gen_random_uuid(), now(), now())",
    )
    .bind(three_back)
    .execute(&cdp.db.pool)
    .await?;
    let tick = cdp.run("tick").await?;
    assert_eq!(tick["queued"], 1, "one month at a time: {tick}");
    let months = cdp.months(30).await?;
    assert_eq!(months.len(), 4);
    assert_eq!(months[1], (sub_months(current, 2), "QUEUED".to_owned(), 0));
    cdp.work_until_empty(&cdp.worker()).await?;
    let in_completion_order: Vec<NaiveDate> = sqlx::query_scalar(
        "SELECT month FROM cdp_months WHERE advertiser_id = 30 AND month > $1 ORDER BY completed_at",
    )
    .bind(three_back)
    .fetch_all(&cdp.db.pool)
    .await?;
    assert_eq!(
        in_completion_order,
        [sub_months(current, 2), sub_months(current, 1), current]
    );

    // Last month fails later on (a retry is due): it goes before anything else.
    sqlx::query(
        "UPDATE cdp_months SET state = 'FAILED', retry_count = 1, next_attempt_at = now()
          WHERE advertiser_id = 30 AND month = $1",
    )
    .bind(sub_months(current, 1))
    .execute(&cdp.db.pool)
    .await?;
    cdp.run("tick").await?;
    assert_eq!(
        cdp.months(30).await?[2],
        (sub_months(current, 1), "QUEUED".to_owned(), 1)
    );
    Ok(())
}

#[tokio::test]
async fn a_retry_of_an_inactive_advertisers_month_is_refused() -> anyhow::Result<()> {
    let cdp = Cdp::new().await?;
    let backfill = cdp.backfill(cdp.db.pool.clone());
    let current = current_month(today());
    cdp.advertiser(31, "EXISTING").await?;
    sqlx::query(
        "INSERT INTO cdp_months (advertiser_id, month, state, retry_count) VALUES (31, $1, 'FAILED', 4)",
    )
    .bind(current)
    .execute(&cdp.db.pool)
    .await?;
    assert!(backfill.set_active(31, false, "broken feed", "ops").await?);
    assert!(
        !backfill.retry_month(31, current).await?,
        "activate it instead"
    );
    assert_eq!(cdp.months(31).await?, [(current, "FAILED".to_owned(), 4)]);
    assert!(backfill.set_active(31, true, "", "ops").await?);
    assert_eq!(cdp.months(31).await?, [(current, "QUEUED".to_owned(), 0)]);
    Ok(())
}
