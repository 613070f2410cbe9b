//! The scheduled jobs against the real stack: a migrated PostgreSQL database of the test's own,
//! a Redis server of its own (so it can be stopped), S3 and SNS in the local AWS endpoint, with
//! the operators' messages read back from a subscribed queue.

use std::time::Duration;

use adapters::jobs::Reporter;
use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use domain::budget::{counter_key, status_key};
use domain::calendar::{add_days, add_months, kst_date, kst_day_start, month_of, sub_days};
use domain::retention::Cutoffs;
use integration_tests::{RedisServer, TestAws, TestDb, seed_titles};
use redis::AsyncCommands as _;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn reporter(db: &TestDb, aws: &mut TestAws) -> anyhow::Result<Reporter> {
    Ok(Reporter {
        db: db.pool.clone(),
        sns: adapters::aws::sns(&aws.sdk),
        topic_arn: aws.subscribed_topic("operator-alerts").await?,
    })
}

fn redis_config(redis: &RedisServer) -> adapters::config::RedisConfig {
    adapters::config::RedisConfig {
        url: SecretString::from(redis.url()),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        retries: 1,
    }
}

/// `count` raw events of one type for a campaign, spread over the day's hours, each costing
/// `cost_micros`.
async fn raw_events(
    db: &PgPool,
    day: NaiveDate,
    (campaign, advertiser): (i64, i64),
    event_type: &str,
    count: i64,
    cost_micros: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type,
                                cost_micros, device_id, ip)
         SELECT gen_random_uuid(), $1 + (i % 24) * INTERVAL '1 hour' + (i % 3600) * INTERVAL '1 second',
                $2, $3, $4, $5, 'device-' || i, '198.51.100.7'
         FROM generate_series(1, $6) AS i",
    )
    .bind(kst_day_start(day))
    .bind(campaign)
    .bind(advertiser)
    .bind(event_type)
    .bind(cost_micros)
    .bind(count)
    .execute(db)
    .await?;
    Ok(())
}

/// 24 hourly windows (and, to be ignored, 1-minute ones) for a campaign's day.
async fn hourly_windows(
    db: &PgPool,
    day: NaiveDate,
    (campaign, advertiser): (i64, i64),
    per_hour: (i64, i64, i64, i64),
) -> anyhow::Result<()> {
    let (impressions, clicks, conversions, cost_micros) = per_hour;
    sqlx::query(
        "INSERT INTO performance_metrics (campaign_id, advertiser_id, window_size, window_start,
             window_date, impressions, clicks, conversions, cost_micros)
         SELECT $2, $3, size, $1 + h * INTERVAL '1 hour', $8, $4, $5, $6, $7
         FROM generate_series(0, 23) AS h, unnest(ARRAY['1h', '1m']) AS size",
    )
    .bind(kst_day_start(day))
    .bind(campaign)
    .bind(advertiser)
    .bind(impressions)
    .bind(clicks)
    .bind(conversions)
    .bind(cost_micros)
    .bind(day)
    .execute(db)
    .await?;
    Ok(())
}

/// The rows a job owns, as text without timestamps, for "same final state" assertions.
async fn state(db: &PgPool, sql: &'static str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(sql).fetch_all(db).await?)
}

const ROLLUP_STATE: &str = "
    SELECT format('daily %s %s %s %s %s %s %s %s', campaign_id, stat_date, advertiser_id,
                  impressions, clicks, conversions, cost_micros, hours)
    FROM campaign_daily_stats
    UNION ALL
    SELECT format('monthly %s %s %s %s %s %s %s', campaign_id, month, impressions, clicks,
                  conversions, cost_micros, days)
    FROM campaign_monthly_stats
    UNION ALL
    SELECT format('review %s %s %s %s %s %s %s', stat_date, campaign_id, metric, rolled_up, raw,
                  round(difference_ratio::numeric, 4), status)
    FROM rollup_reviews
    ORDER BY 1";

/// A recent day whose day before is in the same month.
fn recent_day() -> NaiveDate {
    let day = sub_days(kst_date(Utc::now()), 2);
    if day.day() == 1 {
        sub_days(day, 2)
    } else {
        day
    }
}

fn reviews_listed(summary: &Value) -> Vec<(i64, String)> {
    summary["details"]["new_reviews"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["campaign_id"].as_i64().unwrap_or_default(),
                r["metric"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn daily_rollup_rolls_up_checks_against_raw_events_and_reruns_to_the_same_state()
-> anyhow::Result<()> {
    let (db, mut aws) = (TestDb::new().await?, TestAws::new().await?);
    let deps = daily_rollup::Deps {
        reporter: reporter(&db, &mut aws).await?,
    };
    let day = recent_day();
    let before = sub_days(day, 1);
    let (c1, c2, c3) = ((1, 10), (2, 10), (3, 20));
    // c1 matches its raw events exactly, on both days.
    for d in [before, day] {
        hourly_windows(&db.pool, d, c1, (100, 10, 1, 1_000_000)).await?;
        raw_events(&db.pool, d, c1, "impression", 2400, 0).await?;
        raw_events(&db.pool, d, c1, "click", 240, 100_000).await?;
        raw_events(&db.pool, d, c1, "conversion", 24, 0).await?;
    }
    // c2's hourly windows count 2,400 impressions; its raw events 2,200 (9 % off).
    hourly_windows(&db.pool, day, c2, (100, 0, 0, 0)).await?;
    raw_events(&db.pool, day, c2, "impression", 2200, 0).await?;
    // c3 has raw events and no hourly windows at all.
    raw_events(&db.pool, day, c3, "click", 5, 1_000).await?;

    daily_rollup::handle(json!({"date": before}), &deps).await?;
    let summary = daily_rollup::handle(json!({"date": day}), &deps).await?;
    assert_eq!(summary["target_date"], json!(day));
    assert_eq!(summary["daily_rows"], 2);
    assert_eq!(
        summary["hourly_rows"], 48,
        "1-minute windows are not rolled up"
    );
    assert_eq!(summary["reviews_open"], 2);
    assert_eq!(summary["details"]["raw_checked"], true);
    let mut listed = reviews_listed(&summary);
    listed.sort();
    assert_eq!(
        listed,
        [(2, "impressions".to_owned()), (3, "clicks".to_owned())]
    );

    let rows = state(&db.pool, ROLLUP_STATE).await?;
    let expect_daily = format!("daily 1 {day} 10 2400 240 24 24000000 24");
    let expect_monthly = format!("monthly 1 {} 4800 480 48 48000000 2", month_of(day));
    for expected in [
        expect_daily.as_str(),
        expect_monthly.as_str(),
        &format!("review {day} 2 impressions 2400 2200 0.0909 open"),
        &format!("review {day} 3 clicks 0 5 1.0000 open"),
    ] {
        assert!(
            rows.iter().any(|r| r == expected),
            "{expected} in {rows:#?}"
        );
    }
    let messages = aws.drain("operator-alerts").await?;
    assert_eq!(messages.len(), 2, "one summary per run");
    let of_day = messages
        .iter()
        .find(|m| m["target_date"] == json!(day))
        .cloned()
        .unwrap_or_default();
    assert_eq!(of_day["job"], "daily-rollup");
    assert_eq!(of_day["new_reviews"], 2);

    // The same day again (a duplicate or an operator's re-run): the same rows, and the review
    // items are not announced again.
    let again = daily_rollup::handle(json!({"date": day}), &deps).await?;
    assert_eq!(state(&db.pool, ROLLUP_STATE).await?, rows);
    assert_eq!(again["new_reviews"], 0);
    assert_eq!(aws.drain("operator-alerts").await?.len(), 1);

    // A late batch of c1 raw events makes it differ; the run crashes before it can tell
    // anyone (the operators' topic is unreachable), then its retry tells them once.
    raw_events(&db.pool, day, c1, "impression", 600, 7).await?;
    let broken = daily_rollup::Deps {
        reporter: Reporter {
            topic_arn: "arn:aws:sns:ap-northeast-2:123456789012:no-such-topic".to_owned(),
            ..deps.reporter.clone()
        },
    };
    let crashed = daily_rollup::handle(json!({"date": day}), &broken)
        .await
        .expect_err("the summary cannot be published");
    assert!(crashed.is_retryable(), "{crashed}");
    let retried = daily_rollup::handle(json!({"date": day}), &deps).await?;
    assert_eq!(reviews_listed(&retried), [(1, "impressions".to_owned())]);
    let next = daily_rollup::handle(json!({"date": day}), &deps).await?;
    assert_eq!(next["new_reviews"], 0);

    // The late events turn out to be duplicates and are removed: the review item resolves.
    sqlx::query("DELETE FROM ad_events WHERE campaign_id = 1 AND cost_micros = 7")
        .execute(&db.pool)
        .await?;
    let resolved = daily_rollup::handle(json!({"date": day}), &deps).await?;
    assert_eq!(resolved["reviews_resolved"], 1);

    // The schedule's own input: the scheduled time 02:00 KST on the next day means `day`.
    let fired = kst_day_start(add_days(day, 1)) + chrono::TimeDelta::hours(2);
    let scheduled = daily_rollup::handle(json!({"scheduled_time": fired}), &deps).await?;
    assert_eq!(scheduled["target_date"], json!(day));
    assert_eq!(
        db.count("SELECT count(*) FROM job_runs WHERE job = 'daily-rollup'")
            .await?,
        8,
        "every run is recorded, including the one whose report failed to publish"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM job_runs WHERE job = 'daily-rollup' AND error IS NOT NULL")
            .await?,
        1,
        "the run whose report failed to publish is recorded as failed"
    );

    // Partitions are ready months ahead.
    let ahead = add_months(
        month_of(kst_date(Utc::now())),
        domain::rollup::PARTITIONS_AHEAD,
    );
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass(ad_events_partition_name($1))::text")
            .bind(ahead)
            .fetch_one(&db.pool)
            .await?;
    assert!(exists.is_some(), "partition of {ahead}");

    // A day past raw-event retention is rolled up but not checked, and re-running it does
    // not bring back the partition retention dropped.
    let old = sub_days(kst_date(Utc::now()), 200);
    let old_run = daily_rollup::handle(json!({"date": old}), &deps).await?;
    assert_eq!(old_run["details"]["raw_checked"], false);
    let recreated: Option<String> =
        sqlx::query_scalar("SELECT to_regclass(ad_events_partition_name($1))::text")
            .bind(month_of(old))
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(recreated, None);

    // Bad input is refused with its reason, before anything runs.
    let refused = daily_rollup::handle(json!({"day": "yesterday"}), &deps)
        .await
        .expect_err("unknown field");
    assert!(!refused.is_retryable());
    Ok(())
}

#[tokio::test]
async fn daily_rollup_leaves_out_a_campaign_whose_sums_pass_bigint_and_rolls_up_the_rest()
-> anyhow::Result<()> {
    let (db, mut aws) = (TestDb::new().await?, TestAws::new().await?);
    let deps = daily_rollup::Deps {
        reporter: reporter(&db, &mut aws).await?,
    };
    let day = recent_day();
    let (fine, huge) = ((1, 10), (2, 20));
    hourly_windows(&db.pool, day, fine, (100, 10, 1, 1_000_000)).await?;
    // 24 windows of 10^18 micros each: the day's cost sums past i64::MAX.
    hourly_windows(&db.pool, day, huge, (100, 10, 1, 1_000_000_000_000_000_000)).await?;
    raw_events(&db.pool, day, huge, "click", 3, i64::MAX / 2).await?;

    let summary = daily_rollup::handle(json!({"date": day}), &deps).await?;
    assert_eq!(summary["daily_rows"], 1, "{summary}");
    assert_eq!(summary["overflowing_campaigns"], 1, "{summary}");
    let daily: Vec<i64> = sqlx::query_scalar("SELECT campaign_id FROM campaign_daily_stats")
        .fetch_all(&db.pool)
        .await?;
    assert_eq!(daily, [1]);
    let monthly: Vec<i64> = sqlx::query_scalar("SELECT campaign_id FROM campaign_monthly_stats")
        .fetch_all(&db.pool)
        .await?;
    assert_eq!(monthly, [1]);
    let review: (String, String) = sqlx::query_as(
        "SELECT metric, status FROM rollup_reviews WHERE campaign_id = 2 AND stat_date = $1",
    )
    .bind(day)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        review,
        (
            "cost_micros: the day sums past bigint".to_owned(),
            "open".to_owned()
        )
    );
    assert!(
        reviews_listed(&summary).contains(&(2, review.0.clone())),
        "{summary}"
    );
    // A re-run comes to the same state.
    let before = state(&db.pool, ROLLUP_STATE).await?;
    daily_rollup::handle(json!({"date": day}), &deps).await?;
    assert_eq!(state(&db.pool, ROLLUP_STATE).await?, before);
    Ok(())
}

#[tokio::test]
async fn budget_settlement_classifies_every_campaign_and_fails_cleanly_without_redis()
-> anyhow::Result<()> {
    let (db, mut aws) = (TestDb::new().await?, TestAws::new().await?);
    let mut redis = RedisServer::start().await?;
    let deps = budget_settlement::Deps {
        reporter: reporter(&db, &mut aws).await?,
        redis: adapters::redis::connect_lazy(&redis_config(&redis))?,
        s3: aws.s3.clone(),
        report_bucket: aws.bucket.clone(),
    };
    sqlx::query(
        "INSERT INTO campaigns (campaign_id, advertiser_id, daily_budget) VALUES
             (1, 100, 5000), (2, 100, 5000), (3, 100, 5000), (4, 200, 5000), (6, 200, 5000)",
    )
    .execute(&db.pool)
    .await?;
    let day = recent_day();
    // DB deductions in won: c1 1,000, c2 500, c3 300, c4 700 (the costs of clicks).
    for (campaign, clicks) in [(1, 10), (2, 5), (3, 3), (4, 7)] {
        let advertiser = if campaign == 4 { 200 } else { 100 };
        raw_events(
            &db.pool,
            day,
            (campaign, advertiser),
            "click",
            clicks,
            100_000_000,
        )
        .await?;
    }
    let mut conn = redis.connection().await?;
    for (campaign, spent) in [(1, 1000), (2, 600), (3, 250), (6, 50)] {
        let () = conn.set(counter_key(campaign, day), spent).await?;
    }
    let () = conn.set(counter_key(5, sub_days(day, 5)), 999).await?;
    let () = conn.set(status_key(1), "active").await?;

    let summary = budget_settlement::handle(json!({"date": day}), &deps).await?;
    for (name, expected) in [
        ("campaigns", 5),
        ("advertisers", 2),
        ("match", 1),
        ("redis_over", 1),
        ("db_over", 1),
        ("missing_in_redis", 1),
        ("missing_in_db", 1),
        ("db_spent", 2500),
        ("redis_spent", 1900),
    ] {
        assert_eq!(summary[name], expected, "{name} in {summary}");
    }
    const SETTLEMENTS: &str = "
        SELECT format('%s %s %s %s %s %s %s %s %s %s', advertiser_id, campaigns, db_spent,
                      redis_spent, difference, matched, redis_over, db_over, missing_in_redis,
                      missing_in_db)
        FROM budget_settlements ORDER BY 1";
    let settlements = state(&db.pool, SETTLEMENTS).await?;
    assert_eq!(
        settlements,
        [
            "100 3 1800 1850 50 1 1 1 0 0",
            "200 2 700 50 -650 0 0 0 1 1"
        ]
    );
    let key = budget_settlement::report_key(day);
    let report = read_object(&aws, &key).await?;
    assert_eq!(
        report,
        format!(
            "settle_date,advertiser_id,campaign_id,redis_spent,db_spent,difference,classification\n\
             {day},100,1,1000,1000,0,match\n\
             {day},100,2,600,500,100,redis_over\n\
             {day},100,3,250,300,-50,db_over\n\
             {day},200,4,,700,-700,missing_in_redis\n\
             {day},200,6,50,,50,missing_in_db\n"
        )
    );

    // Settled again: the same rows and the same report.
    budget_settlement::handle(json!({"date": day}), &deps).await?;
    assert_eq!(state(&db.pool, SETTLEMENTS).await?, settlements);
    assert_eq!(read_object(&aws, &key).await?, report);
    assert_eq!(
        db.count("SELECT count(*) FROM budget_settlement_items")
            .await?,
        5
    );

    // Redis away: the run for another day fails before writing anything, and its retry,
    // once Redis is back, settles the day.
    let other = sub_days(day, 1);
    let () = conn.set(counter_key(1, other), 10).await?;
    redis.stop().await?;
    let failed = budget_settlement::handle(json!({"date": other}), &deps)
        .await
        .expect_err("Redis is down");
    assert!(failed.is_retryable(), "{failed}");
    assert_eq!(
        db.count("SELECT count(*) FROM budget_settlement_items")
            .await?,
        5
    );
    assert!(
        !aws.object_keys()
            .await?
            .contains(&budget_settlement::report_key(other))
    );
    redis.start_again().await?;
    let retried = budget_settlement::handle(json!({"date": other}), &deps).await?;
    assert_eq!(retried["missing_in_db"], 1);
    assert!(
        aws.object_keys()
            .await?
            .contains(&budget_settlement::report_key(other))
    );
    Ok(())
}

#[tokio::test]
async fn budget_settlement_settles_the_day_when_a_counter_or_deductions_are_absurd()
-> anyhow::Result<()> {
    let (db, mut aws) = (TestDb::new().await?, TestAws::new().await?);
    let redis = RedisServer::start().await?;
    let deps = budget_settlement::Deps {
        reporter: reporter(&db, &mut aws).await?,
        redis: adapters::redis::connect_lazy(&redis_config(&redis))?,
        s3: aws.s3.clone(),
        report_bucket: aws.bucket.clone(),
    };
    let day = recent_day();
    // c1 is ordinary; c2's counter is near i64::MAX; c3's deductions sum past a bigint.
    raw_events(&db.pool, day, (1, 100), "click", 10, 100_000_000).await?;
    raw_events(&db.pool, day, (3, 100), "click", 3, i64::MAX / 2).await?;
    let mut conn = redis.connection().await?;
    for (campaign, spent) in [(1, 1000), (2, i64::MAX - 1), (3, 10)] {
        let () = conn.set(counter_key(campaign, day), spent).await?;
    }

    let summary = budget_settlement::handle(json!({"date": day}), &deps).await?;
    assert_eq!(summary["counters_unreadable"], 1, "{summary}");
    assert_eq!(summary["campaigns"], 2, "{summary}");
    let items: Vec<(i64, String)> = sqlx::query_as(
        "SELECT campaign_id, classification FROM budget_settlement_items ORDER BY campaign_id",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(items, [(1, "match".to_owned()), (3, "db_over".to_owned())]);
    Ok(())
}

async fn read_object(aws: &TestAws, key: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8(aws.object(key).await?)?)
}

/// One raw event at an instant, with a device and an IP address.
async fn event_at(db: &PgPool, at: DateTime<Utc>, device: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ad_events (event_id, occurred_at, campaign_id, advertiser_id, event_type,
                                device_id, ip)
         VALUES (gen_random_uuid(), $1, 1, 10, 'impression', $2, '203.0.113.77')",
    )
    .bind(at)
    .bind(device)
    .execute(db)
    .await?;
    Ok(())
}

const RETENTION_COUNTS: [&str; 7] = [
    "partitions_dropped",
    "raw_events_deleted",
    "pseudonymised",
    "hourly_deleted",
    "daily_deleted",
    "reader_events_deleted",
    "counters_deleted",
];

const RETENTION_STATE: &str = "
    SELECT format('event %s %s %s', device_id, ip, anonymised_at IS NOT NULL) FROM ad_events
    UNION ALL
    SELECT format('hourly %s', window_date) FROM performance_metrics
    UNION ALL
    SELECT format('daily %s', stat_date) FROM campaign_daily_stats
    UNION ALL
    SELECT format('reader %s', occurred_at) FROM user_webtoon_events
    ORDER BY 1";

#[tokio::test]
async fn retention_removes_only_what_is_past_each_window() -> anyhow::Result<()> {
    let (db, mut aws) = (TestDb::new().await?, TestAws::new().await?);
    let redis = RedisServer::start().await?;
    let deps = retention::Deps {
        reporter: reporter(&db, &mut aws).await?,
        redis: adapters::redis::connect_lazy(&redis_config(&redis))?,
    };
    // Two days back, so that "a day later" below is still a finished day.
    let target = sub_days(kst_date(Utc::now()), 2);
    let cut = Cutoffs::for_target(target);
    let second = chrono::TimeDelta::seconds(1);
    let old_month = month_of(sub_days(kst_date(cut.raw_events), 40));
    sqlx::query("SELECT ensure_ad_event_partitions($1, $2)")
        .bind(old_month)
        .bind(cut.as_of)
        .execute(&db.pool)
        .await?;

    // Raw events on each side of each boundary.
    event_at(&db.pool, kst_day_start(old_month), "old-month").await?;
    event_at(&db.pool, cut.raw_events - second, "raw-before").await?;
    event_at(&db.pool, cut.raw_events, "raw-at").await?;
    event_at(&db.pool, cut.pseudonymise - second, "pseudo-before").await?;
    event_at(&db.pool, cut.pseudonymise, "pseudo-at").await?;
    event_at(&db.pool, kst_day_start(target), "recent").await?;
    for day in [sub_days(cut.hourly, 1), cut.hourly] {
        sqlx::query(
            "INSERT INTO performance_metrics (campaign_id, advertiser_id, window_size,
                 window_start, window_date, impressions, clicks, conversions, cost_micros)
             VALUES (1, 10, '1h', $1, $2, 1, 0, 0, 0)",
        )
        .bind(kst_day_start(day))
        .bind(day)
        .execute(&db.pool)
        .await?;
    }
    for day in [sub_days(cut.daily, 1), cut.daily] {
        sqlx::query(
            "INSERT INTO campaign_daily_stats (campaign_id, stat_date, advertiser_id,
                 impressions, clicks, conversions, cost_micros, hours)
             VALUES (1, $1, 10, 1, 0, 0, 0, 24)",
        )
        .bind(day)
        .execute(&db.pool)
        .await?;
    }
    let webtoon = seed_titles(&db.pool, 1, 1).await?[0];
    for at in [cut.reader_events - second, cut.reader_events] {
        sqlx::query(
            "INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, occurred_at)
             VALUES (gen_random_uuid(), 7, $1, 'view', $2)",
        )
        .bind(webtoon)
        .bind(at)
        .execute(&db.pool)
        .await?;
    }
    let mut conn = redis.connection().await?;
    let expired_counter = counter_key(1, sub_days(cut.counters, 1));
    let kept_counter = counter_key(1, cut.counters);
    for key in [&expired_counter, &kept_counter] {
        let () = conn.set(key, 100).await?;
    }
    let () = conn.set(status_key(1), "active").await?;
    let before = state(&db.pool, RETENTION_STATE).await?;

    // A dry run reports and touches nothing.
    let dry = retention::handle(json!({"date": target, "dry_run": true}), &deps).await?;
    assert_eq!(state(&db.pool, RETENTION_STATE).await?, before);
    let exists: bool = conn.exists(&expired_counter).await?;
    assert!(exists, "dry run kept the counter");
    assert_eq!(dry["dry_run"], true);

    let real = retention::handle(json!({"date": target}), &deps).await?;
    for name in RETENTION_COUNTS {
        assert_eq!(dry[name], real[name], "the dry run foretold {name}");
    }
    assert_eq!(real["raw_events_deleted"], 2);
    assert_eq!(real["pseudonymised"], 2, "raw-at is past 30 days too");
    assert_eq!(real["hourly_deleted"], 1);
    assert_eq!(real["daily_deleted"], 1);
    assert_eq!(real["reader_events_deleted"], 1);
    assert_eq!(real["counters_deleted"], 1);
    let dropped = real["details"]["partitions_dropped"].to_string();
    assert!(
        dropped.contains(&format!("ad_events_y{}", old_month.format("%Ym%m"))),
        "{dropped}"
    );

    let after = state(&db.pool, RETENTION_STATE).await?;
    let events: Vec<&String> = after.iter().filter(|r| r.starts_with("event")).collect();
    assert_eq!(events.len(), 4, "{after:#?}");
    assert!(after.contains(&"event pseudo-at 203.0.113.77 f".to_owned()));
    assert!(after.contains(&"event recent 203.0.113.77 f".to_owned()));
    let pseudonymised: Vec<&&String> = events
        .iter()
        .filter(|r| r.ends_with("203.0.113.0/24 t"))
        .collect();
    assert_eq!(
        pseudonymised.len(),
        2,
        "raw-at and pseudo-before: {after:#?}"
    );
    for row in pseudonymised {
        let device = row.split(' ').nth(1).unwrap_or_default();
        assert_eq!(device.len(), 64, "a SHA-256 in hex, not the id: {row}");
        assert!(!device.contains("raw") && !device.contains("pseudo"));
    }
    for kept in [
        format!("hourly {}", cut.hourly),
        format!("daily {}", cut.daily),
    ] {
        assert!(after.contains(&kept), "{kept} in {after:#?}");
    }
    let readers: Vec<&String> = after.iter().filter(|r| r.starts_with("reader")).collect();
    assert_eq!(
        readers.len(),
        1,
        "the event at the cut-off stays: {after:#?}"
    );
    assert_eq!(after.len(), 7);
    let (gone, kept, status): (bool, bool, bool) = redis::pipe()
        .exists(&expired_counter)
        .exists(&kept_counter)
        .exists(status_key(1))
        .query_async(&mut conn)
        .await?;
    assert!(!gone && kept && status);

    // Again: nothing left to do, nothing changes.
    let again = retention::handle(json!({"date": target}), &deps).await?;
    for name in RETENTION_COUNTS {
        assert_eq!(again[name], 0, "{name} on the second run");
    }
    assert_eq!(state(&db.pool, RETENTION_STATE).await?, after);
    assert_eq!(aws.drain("operator-alerts").await?.len(), 3);

    // A day later Redis is away: the run does the database work, then fails at the counters;
    // its retry removes the counters and does nothing twice.
    let next = cut.as_of;
    let next_cut = Cutoffs::for_target(next);
    let () = conn
        .set(counter_key(2, sub_days(next_cut.counters, 1)), 5)
        .await?;
    let mut redis = redis;
    redis.stop().await?;
    let failed = retention::handle(json!({"date": next}), &deps)
        .await
        .expect_err("Redis is down");
    assert!(failed.is_retryable(), "{failed}");
    let done_before_the_failure = state(&db.pool, RETENTION_STATE).await?;
    redis.start_again().await?;
    let retried = retention::handle(json!({"date": next}), &deps).await?;
    assert_eq!(retried["counters_deleted"], 2, "{retried}");
    for name in &RETENTION_COUNTS[..5] {
        assert_eq!(retried[*name], 0, "{name} was done before the failure");
    }
    assert_eq!(
        state(&db.pool, RETENTION_STATE).await?,
        done_before_the_failure
    );
    Ok(())
}

#[tokio::test]
async fn the_partition_naming_rule_reads_back_its_own_names_and_nothing_else() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let months: Vec<(String, Option<NaiveDate>)> = sqlx::query_as(
        "SELECT ad_events_partition_name(m::date), ad_events_partition_month(
                    ad_events_partition_name(m::date))
           FROM generate_series('2024-01-01'::date, '2031-12-01', '1 month') AS m",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(months.len(), 96);
    assert!(months.iter().all(|(_, month)| month.is_some()));
    assert_eq!(months[7].0, "ad_events_y2024m08");
    assert_eq!(
        months[7].1,
        Some(NaiveDate::from_ymd_opt(2024, 8, 1).expect("a date"))
    );
    for other in [
        "ad_events_y2026m13",
        "ad_events_y26m08",
        "ad_events",
        "webtoons",
    ] {
        let month: Option<NaiveDate> = sqlx::query_scalar("SELECT ad_events_partition_month($1)")
            .bind(other)
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(month, None, "{other}");
    }
    Ok(())
}
