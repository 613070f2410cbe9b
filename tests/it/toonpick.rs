//! TOONPICK's scheduled work against the real stack: the daily collection reads catalog feeds
//! from a local HTTP server and sends to the test's own webtoon queues (then webtoon-sync applies
//! what it sent); recommendations, the weekly analysis and the monthly report read a seeded
//! population in the test's own database; the report lands in the test's bucket and its link
//! goes to a subscribed queue.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use adapters::guarded_http::{FetchPolicy, GuardedClient};
use adapters::jobs::Reporter;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::NaiveDate;
use domain::catalog::{Feed, parse_feeds};
use domain::recommend::{VARIANTS, variant_of};
use integration_tests::{Population, TestAws, TestDb, seed_events, seed_titles, webtoon_deps};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DAY: &str = "2026-11-20";

fn day() -> NaiveDate {
    DAY.parse().expect("date")
}

async fn reporter(db: &TestDb, aws: &mut TestAws) -> anyhow::Result<Reporter> {
    Ok(Reporter {
        db: db.pool.clone(),
        sns: adapters::aws::sns(&aws.sdk),
        topic_arn: aws.subscribed_topic("operator-alerts").await?,
    })
}

fn entry(id: &str, title: &str) -> Value {
    json!({
        "external_id": id, "title": title, "status": "ONGOING", "genres": ["DRAMA"],
        "authors": [{"name": "이서연", "role": "WRITER"}],
        "episodes": [{"number": 1, "title": "1화"}]
    })
}

fn page(entries: Vec<Value>, next: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"entries": entries, "next": next}))
}

/// Serves exactly these feed paths (wiremock keeps the first mock that matches, so every
/// change of a feed re-mounts them all).
async fn serve(server: &MockServer, feeds: Vec<(&str, ResponseTemplate)>) {
    server.reset().await;
    for (at, response) in feeds {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(response)
            .mount(server)
            .await;
    }
}

struct Collection {
    db: TestDb,
    aws: TestAws,
    server: MockServer,
    deps: daily_collection::Deps,
}

impl Collection {
    async fn new() -> anyhow::Result<Self> {
        let db = TestDb::new().await?;
        let mut aws = TestAws::new().await?;
        let server = MockServer::start().await;
        let feeds: Vec<Feed> = parse_feeds(&format!(
            "NAVER={0}/naver.json,KAKAO={0}/kakao.json,LEZHIN={0}/lezhin.json",
            server.uri()
        ))?;
        let policy = FetchPolicy {
            allow_hosts: vec!["127.0.0.1".to_owned()],
            ..daily_collection::default_policy()
        };
        let deps = daily_collection::Deps {
            reporter: reporter(&db, &mut aws).await?,
            sqs: aws.sqs.clone(),
            client: GuardedClient::new(&policy, "test")?,
            feeds,
            create_queue_url: aws.queue_url("webtoon-create-request").to_owned(),
            update_queue_url: aws.queue_url("webtoon-update-request").to_owned(),
            pace: daily_collection::Pace::new(Some(200.0), Some(10)),
        };
        Ok(Self {
            db,
            aws,
            server,
            deps,
        })
    }

    async fn run(&self) -> Result<Value, domain::WorkerError> {
        daily_collection::handle(json!({"date": DAY}), &self.deps).await
    }

    /// The last run's summary as recorded.
    async fn summary(&self) -> anyhow::Result<Value> {
        Ok(sqlx::query_scalar(
            "SELECT summary FROM job_runs WHERE job = 'daily-collection' ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// What is on a request queue now, handed to webtoon-sync as one SQS event.
    async fn deliver(&self, queue: &str) -> anyhow::Result<Vec<Value>> {
        let bodies = self.aws.drain_bodies(queue).await?;
        let arn = format!(
            "arn:aws:sqs:ap-northeast-2:000000000000:{}-{queue}",
            self.aws.prefix
        );
        let records: Vec<SqsMessage> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut message = SqsMessage::default();
                message.message_id = Some(format!("m-{i}"));
                message.body = Some(body.clone());
                message.event_source_arn = Some(arn.clone());
                message
            })
            .collect();
        let sync = webtoon_deps(&self.db, &self.aws, &[])?;
        let mut event = SqsEvent::default();
        event.records = records;
        let response = webtoon_sync::handle(event, &sync).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "webtoon-sync failed some requests"
        );
        bodies
            .iter()
            .map(|b| Ok(serde_json::from_str(b)?))
            .collect()
    }
}

fn ids(requests: &[Value]) -> HashSet<String> {
    requests
        .iter()
        .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn collection_sends_new_and_changed_titles_once_and_a_failing_platform_stops_nothing()
-> anyhow::Result<()> {
    let c = Collection::new().await?;
    let naver = || {
        page(
            vec![entry("n1", "하늘"), entry("n2", "바다")],
            Some("naver-2.json"),
        )
    };
    let naver_2 = || {
        page(
            vec![
                entry("n3", "숲"),
                json!({"external_id": "n4", "title": " ", "status": "ONGOING"}),
                entry("n1", "dup"),
            ],
            None,
        )
    };
    // KAKAO is down (it may come back: the run is retried); LEZHIN serves a web page, which is
    // its own fault and is not retried.
    serve(
        &c.server,
        vec![
            ("/naver.json", naver()),
            ("/naver-2.json", naver_2()),
            ("/kakao.json", ResponseTemplate::new(503)),
            (
                "/lezhin.json",
                ResponseTemplate::new(200).set_body_string("<html>"),
            ),
        ],
    )
    .await;

    let err = c
        .run()
        .await
        .expect_err("KAKAO's outage fails the run, to be retried");
    assert!(err.is_retryable(), "{err}");
    let summary = c.summary().await?;
    let got = &summary["details"]["platforms"]["NAVER"];
    assert_eq!(
        (
            got["fetched"].as_i64(),
            got["new"].as_i64(),
            got["failed"].as_i64(),
            got["pages"].as_i64()
        ),
        (Some(5), Some(3), Some(2), Some(2)),
        "{got}"
    );
    // Read to its end, NAVER says what it no longer lists (nothing yet); a feed that failed
    // says nothing of what is gone.
    assert_eq!(got["gone"], 0);
    assert_eq!(summary["details"]["platforms"]["KAKAO"].get("gone"), None);
    assert!(
        summary["details"]["platforms"]["KAKAO"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("503"))
    );
    assert_eq!(summary["details"]["platforms"]["KAKAO"]["retryable"], true);
    assert!(
        summary["details"]["platforms"]["LEZHIN"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("content type"))
    );
    assert_eq!(
        summary["details"]["platforms"]["LEZHIN"].get("retryable"),
        None
    );

    let created = c.deliver("webtoon-create-request").await?;
    assert_eq!(created.len(), 3);
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM webtoons ORDER BY external_id")
        .fetch_all(&c.db.pool)
        .await?;
    assert_eq!(titles, ["하늘", "바다", "숲"]);

    // The retry, KAKAO back: NAVER sends nothing again, KAKAO its one title.
    let kakao = || page(vec![entry("k1", "별")], None);
    serve(
        &c.server,
        vec![
            ("/naver.json", naver()),
            ("/naver-2.json", naver_2()),
            ("/kakao.json", kakao()),
            ("/lezhin.json", page(vec![], None)),
        ],
    )
    .await;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(summary["details"]["platforms"]["NAVER"]["unchanged"], 3);
    assert_eq!(summary["new_titles"], 1);
    assert_eq!(c.deliver("webtoon-create-request").await?.len(), 1);
    assert!(
        c.aws
            .drain_bodies("webtoon-update-request")
            .await?
            .is_empty()
    );

    // A changed title is one update, sent once however many runs see it at once.
    let revised = |next| {
        page(
            vec![entry("n1", "하늘 (개정판)"), entry("n2", "바다")],
            next,
        )
    };
    serve(
        &c.server,
        vec![
            ("/naver.json", revised(Some("naver-2.json"))),
            ("/naver-2.json", naver_2()),
            ("/kakao.json", kakao()),
            ("/lezhin.json", page(vec![], None)),
        ],
    )
    .await;
    let (a, b) = tokio::join!(c.run(), c.run());
    for run in [a, b] {
        run.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let updates = c.deliver("webtoon-update-request").await?;
    assert!(!updates.is_empty());
    assert_eq!(
        ids(&updates).len(),
        1,
        "one distinct update request: {updates:?}"
    );
    let title: String = sqlx::query_scalar("SELECT title FROM webtoons WHERE external_id = 'n1'")
        .fetch_one(&c.db.pool)
        .await?;
    assert_eq!(title, "하늘 (개정판)");
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(
        (
            summary["new_titles"].as_i64(),
            summary["changed_titles"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert!(
        c.aws
            .drain_bodies("webtoon-update-request")
            .await?
            .is_empty()
    );

    // A title the feed no longer lists is reported as gone, and stays where it is.
    serve(
        &c.server,
        vec![
            ("/naver.json", revised(None)),
            ("/kakao.json", kakao()),
            ("/lezhin.json", page(vec![], None)),
        ],
    )
    .await;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(summary["gone_titles"], 1);
    let naver = &summary["details"]["platforms"]["NAVER"];
    assert_eq!(naver["gone"], 1);
    assert_eq!(
        naver["gone_titles"],
        json!([format!("n3 (last listed {DAY})")])
    );
    assert_eq!(summary["details"]["platforms"]["KAKAO"]["gone"], 0);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM webtoons WHERE external_id = 'n3'")
        .fetch_one(&c.db.pool)
        .await?;
    assert_eq!(kept, 1);
    Ok(())
}

#[tokio::test]
async fn collection_refuses_feeds_that_lead_elsewhere_or_inside() -> anyhow::Result<()> {
    let mut c = Collection::new().await?;
    serve(
        &c.server,
        vec![
            (
                "/naver.json",
                page(
                    vec![entry("n1", "하늘")],
                    Some("http://169.254.169.254/latest/meta-data/"),
                ),
            ),
            ("/kakao.json", page(vec![], Some("kakao.json"))),
            (
                "/lezhin.json",
                ResponseTemplate::new(200).set_body_json(json!({"entries": "all of them"})),
            ),
        ],
    )
    .await;
    // Without the test's allowance, the loopback feed itself is refused.
    c.deps.client = GuardedClient::new(&daily_collection::default_policy(), "test")?;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    for platform in ["NAVER", "KAKAO", "LEZHIN"] {
        let error = summary["details"]["platforms"][platform]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains("not public"), "{platform}: {error}");
    }
    c.deps.client = GuardedClient::new(
        &FetchPolicy {
            allow_hosts: vec!["127.0.0.1".into()],
            ..daily_collection::default_policy()
        },
        "test",
    )?;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let platforms = &summary["details"]["platforms"];
    assert!(
        platforms["NAVER"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("leaves the feed's origin")),
        "{platforms}"
    );
    assert!(
        platforms["KAKAO"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("links back")),
        "{platforms}"
    );
    assert!(
        platforms["LEZHIN"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("page")),
        "{platforms}"
    );
    // What NAVER listed before its bad link is still sent.
    assert_eq!(platforms["NAVER"]["new"], 1);
    assert_eq!(c.aws.drain_bodies("webtoon-create-request").await?.len(), 1);
    Ok(())
}

/// docs/functions/daily-collection.md, "Guarded fetching": at most 3 redirects, 16 MiB per
/// page, and a cap on pages (500 in production, 10 in these tests' pace). Planted on both
/// sides: 3 redirects followed, 4 refused; a page one byte over 16 MiB refused; 11 distinct
/// pages stop at the cap with the first ten's titles still sent.
#[tokio::test]
async fn feeds_past_the_fetch_limits_are_refused_and_the_rest_is_kept() -> anyhow::Result<()> {
    assert_eq!(daily_collection::Pace::new(None, None).max_pages, 500);
    let c = Collection::new().await?;
    let redirect = |to: &str| ResponseTemplate::new(302).insert_header("location", to);
    let huge = format!(
        "{{\"entries\": [], \"pad\": \"{}\"}}",
        "x".repeat(16 * 1024 * 1024)
    );
    serve(
        &c.server,
        vec![
            ("/naver.json", redirect("/n1")),
            ("/n1", redirect("/n2")),
            ("/n2", redirect("/n3")),
            ("/n3", redirect("/n4")),
            ("/n4", page(vec![entry("n-far", "너무 멀리")], None)),
            ("/kakao.json", redirect("/k1")),
            ("/k1", redirect("/k2")),
            ("/k2", redirect("/k3")),
            ("/k3", page(vec![entry("k-near", "가까이")], None)),
            (
                "/lezhin.json",
                ResponseTemplate::new(200).set_body_raw(huge, "application/json"),
            ),
        ],
    )
    .await;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let platforms = &summary["details"]["platforms"];
    let error = |p: &str| {
        platforms[p]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        error("NAVER").contains("more than 3 redirects"),
        "{platforms}"
    );
    assert_eq!(error("KAKAO"), "", "{platforms}");
    assert_eq!(platforms["KAKAO"]["new"], 1);
    assert!(
        error("LEZHIN").contains("larger than 16777216 bytes"),
        "{platforms}"
    );

    // Eleven distinct pages, each naming the next: the cap stops the feed, not the run.
    c.server.reset().await;
    Mock::given(method("GET"))
        .respond_with(|request: &wiremock::Request| {
            let n: usize = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "p")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let next = format!("/naver.json?p={}", n + 1);
            page(
                vec![entry(&format!("p{n}"), &format!("쪽 {n}"))],
                (n < 10).then_some(next.as_str()),
            )
        })
        .mount(&c.server)
        .await;
    c.aws.drain_bodies("webtoon-create-request").await?;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let naver = &summary["details"]["platforms"]["NAVER"];
    assert!(
        naver["error"]
            .as_str()
            .is_some_and(|e| e.contains("more than 10 pages")),
        "{naver}"
    );
    assert_eq!(naver["new"], 10, "{naver}");
    Ok(())
}

/// docs/functions/daily-collection.md: titles a feed read to its end no longer lists are
/// `gone`, counted all, the first ten named. Planted: twelve titles listed, then none.
#[tokio::test]
async fn gone_titles_are_counted_and_the_first_ten_named() -> anyhow::Result<()> {
    let c = Collection::new().await?;
    let twelve: Vec<Value> = (1..=12)
        .map(|i| entry(&format!("g{i:02}"), &format!("작품 {i}")))
        .collect();
    let empty = || -> Vec<(&str, ResponseTemplate)> {
        vec![
            ("/kakao.json", page(vec![], None)),
            ("/lezhin.json", page(vec![], None)),
        ]
    };
    let mut feeds = empty();
    feeds.push(("/naver.json", page(twelve, None)));
    serve(&c.server, feeds).await;
    c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut feeds = empty();
    feeds.push(("/naver.json", page(vec![], None)));
    serve(&c.server, feeds).await;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let naver = &summary["details"]["platforms"]["NAVER"];
    assert_eq!(naver["gone"], 12, "{naver}");
    assert_eq!(
        naver["gone_titles"].as_array().map(Vec::len),
        Some(10),
        "{naver}"
    );
    assert_eq!(summary["gone_titles"], 12);
    Ok(())
}

/// docs/functions/daily-collection.md: `"dry_run": true` counts without sending or recording.
/// Planted: two new titles; the dry run counts 2, leaves the queue and `catalog_entries` empty,
/// and the real run after it still sends both.
#[tokio::test]
async fn a_dry_run_counts_and_neither_sends_nor_records() -> anyhow::Result<()> {
    let c = Collection::new().await?;
    serve(
        &c.server,
        vec![
            (
                "/naver.json",
                page(vec![entry("d1", "하나"), entry("d2", "둘")], None),
            ),
            ("/kakao.json", page(vec![], None)),
            ("/lezhin.json", page(vec![], None)),
        ],
    )
    .await;
    let dry = daily_collection::handle(json!({"date": DAY, "dry_run": true}), &c.deps)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(dry["details"]["platforms"]["NAVER"]["new"], 2, "{dry}");
    assert!(
        c.aws
            .drain_bodies("webtoon-create-request")
            .await?
            .is_empty()
    );
    assert_eq!(c.db.count("SELECT count(*) FROM catalog_entries").await?, 0);
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(summary["details"]["platforms"]["NAVER"]["new"], 2);
    assert_eq!(c.aws.drain_bodies("webtoon-create-request").await?.len(), 2);
    Ok(())
}

/// Recommendations served of titles their reader opened, by the table of reads (the oracle of
/// "never recommended": not the model's own idea of what was read).
const OPENED_AND_RECOMMENDED: &str = "SELECT count(*) FROM current_recommendations r
  WHERE EXISTS (SELECT 1 FROM user_webtoon_events e
                 WHERE e.user_id = r.user_id AND e.webtoon_id = r.webtoon_id)";

/// A population whose tastes are known: two clusters, the second twice the size (its titles
/// top the chart); on the target day every reader reads one more title of their cluster.
async fn population(db: &TestDb) -> anyhow::Result<Vec<i64>> {
    let titles = seed_titles(&db.pool, 40, 2).await?;
    seed_events(
        &db.pool,
        day(),
        Population {
            titles: 40,
            readers: 300,
            events_per_reader: 8,
            clusters: 2,
            days: 20,
        },
    )
    .await?;
    Ok(titles)
}

#[tokio::test]
async fn recommendations_are_unread_stable_split_by_arm_and_beat_popularity() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let mut aws = TestAws::new().await?;
    population(&db).await?;
    let deps = recommendations::Deps {
        reporter: reporter(&db, &mut aws).await?,
    };

    let dry = recommendations::handle(json!({"date": DAY, "dry_run": true}), &deps)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(dry["details"]["set_id"], Value::Null);
    assert_eq!(
        db.count("SELECT count(*) FROM recommendation_sets").await?,
        0
    );

    let summary = recommend_the_day(&deps).await?;
    assert_eq!(summary["readers"], 300);
    let evaluation: HashMap<String, f64> = summary["details"]["evaluation"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["variant"].as_str().unwrap_or_default().to_owned(),
                e["precision_at_10"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let baseline = evaluation["popularity"];
    for arm in VARIANTS {
        assert!(
            evaluation[arm.name] > baseline,
            "{} {} vs popularity {baseline}",
            arm.name,
            evaluation[arm.name]
        );
    }

    // Nothing a reader opened is recommended to them.
    let opened = db.count(OPENED_AND_RECOMMENDED).await?;
    assert_eq!(opened, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM current_recommendations")
            .await?,
        300 * 20
    );

    // Every reader is in their arm, and the arms are both used.
    let arms: Vec<(i64, String)> =
        sqlx::query_as("SELECT DISTINCT user_id, variant FROM current_recommendations")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(arms.len(), 300);
    for (user, arm) in &arms {
        assert_eq!(arm, variant_of(*user).name);
    }
    assert_eq!(arms.iter().map(|a| &a.1).collect::<HashSet<_>>().len(), 2);

    // A set being built is not served; a re-run gives the same lists.
    let first: i64 = sqlx::query_scalar("SELECT DISTINCT set_id FROM current_recommendations")
        .fetch_one(&db.pool)
        .await?;
    let building: i64 = sqlx::query_scalar("SELECT begin_recommendation_set($1)")
        .bind(day())
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT DISTINCT set_id FROM current_recommendations")
            .fetch_one(&db.pool)
            .await?,
        first
    );
    let again = recommend_the_day(&deps).await?;
    let second = again["details"]["set_id"].as_i64().unwrap_or_default();
    assert!(second > building);
    let differing = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM (
           (SELECT user_id, rank, webtoon_id, variant, reason, because_id, because FROM recommendations WHERE set_id = $1
            EXCEPT SELECT user_id, rank, webtoon_id, variant, reason, because_id, because FROM recommendations WHERE set_id = $2)
           UNION ALL
           (SELECT user_id, rank, webtoon_id, variant, reason, because_id, because FROM recommendations WHERE set_id = $2
            EXCEPT SELECT user_id, rank, webtoon_id, variant, reason, because_id, because FROM recommendations WHERE set_id = $1)) d",
    )
    .bind(first)
    .bind(second)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(differing, 0);
    // The set served is the new one; the one before stays for comparison.
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT DISTINCT set_id FROM current_recommendations")
            .fetch_one(&db.pool)
            .await?,
        second
    );
    assert_eq!(
        db.count("SELECT count(*) FROM recommendation_sets WHERE state = 'complete'")
            .await?,
        2
    );

    // The operators got both summaries, with the evaluation.
    let messages = aws.drain("operator-alerts").await?;
    assert!(
        messages
            .iter()
            .any(|m| m["details"]["evaluation"].is_array())
    );
    Ok(())
}

/// One recommendations run for [`DAY`]; its summary.
async fn recommend_the_day(deps: &recommendations::Deps) -> anyhow::Result<Value> {
    recommendations::handle(json!({"date": DAY}), deps)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// docs/functions/recommendations.md: a title the reader opened in any way is never
/// recommended — also one opened 150 days ago, outside the model's 120 days but within the 180
/// days reads are kept. Planted: each reader's first pick of a run, then marked as viewed 150
/// days before the target day. The oracle is the table of reads, not the model.
#[tokio::test]
async fn a_title_opened_before_the_models_window_is_never_recommended() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut aws = TestAws::new().await?;
    population(&db).await?;
    let deps = recommendations::Deps {
        reporter: reporter(&db, &mut aws).await?,
    };
    recommend_the_day(&deps).await?;
    let planted = sqlx::query(
        "INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, occurred_at)
         SELECT gen_random_uuid(), user_id, webtoon_id, 'view', $1::timestamptz - INTERVAL '150 days'
           FROM current_recommendations WHERE rank = 1",
    )
    .bind(domain::calendar::kst_day_start(day()))
    .execute(&db.pool)
    .await?
    .rows_affected();
    assert_eq!(planted, 300);
    // Active = an event in the last 30 days: a reader seen only 40 days ago gets no list.
    sqlx::query(
        "INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, occurred_at)
         SELECT gen_random_uuid(), 900001, id, 'like', $1::timestamptz - INTERVAL '40 days'
           FROM webtoons ORDER BY id LIMIT 5",
    )
    .bind(domain::calendar::kst_day_start(day()))
    .execute(&db.pool)
    .await?;
    let summary = recommend_the_day(&deps).await?;
    assert_eq!(
        summary["readers"], 300,
        "the reader of 40 days ago is not active"
    );
    let cold_before = summary["cold_start_readers"].as_i64().unwrap_or(-1);
    assert_eq!(
        db.count("SELECT count(*) FROM current_recommendations WHERE user_id = 900001")
            .await?,
        0
    );
    let opened = db.count(OPENED_AND_RECOMMENDED).await?;
    assert_eq!(opened, 0, "recommendations of titles the reader opened");
    assert_eq!(
        db.count("SELECT count(*) FROM current_recommendations")
            .await?,
        300 * 20
    );
    // Readers with fewer than 3 titles get the cold-start blend: one active reader with two
    // titles, one with three.
    sqlx::query(
        "INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, occurred_at)
         SELECT gen_random_uuid(), r.user_id, w.id, 'view', $1::timestamptz - INTERVAL '2 days'
           FROM (VALUES (900002, 2), (900003, 3)) AS r (user_id, titles)
           JOIN LATERAL (SELECT id FROM webtoons ORDER BY id LIMIT r.titles) w ON true",
    )
    .bind(domain::calendar::kst_day_start(day()))
    .execute(&db.pool)
    .await?;
    let summary = recommend_the_day(&deps).await?;
    assert_eq!(summary["readers"], 302);
    assert_eq!(
        summary["cold_start_readers"].as_i64(),
        Some(cold_before + 1),
        "the reader of two titles only"
    );
    // Only the two newest complete sets are kept: a third run drops the first. A set a run
    // left building (it died) goes too once it is six hours old, not before.
    let died: i64 = sqlx::query_scalar("SELECT begin_recommendation_set($1)")
        .bind(day())
        .fetch_one(&db.pool)
        .await?;
    let dying: i64 = sqlx::query_scalar("SELECT begin_recommendation_set($1)")
        .bind(day())
        .fetch_one(&db.pool)
        .await?;
    sqlx::query(
        "UPDATE recommendation_sets SET started_at = now() - interval '7 hours' WHERE set_id = $1",
    )
    .bind(died)
    .execute(&db.pool)
    .await?;
    recommend_the_day(&deps).await?;
    assert_eq!(
        db.count("SELECT count(*) FROM recommendation_sets WHERE state = 'complete'")
            .await?,
        2
    );
    let building: Vec<i64> = sqlx::query_scalar(
        "SELECT set_id FROM recommendation_sets WHERE state = 'building' ORDER BY set_id",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(
        building,
        [dying],
        "the set of a run 7 hours dead is dropped"
    );
    Ok(())
}

#[tokio::test]
async fn weekly_analysis_and_monthly_report_describe_the_population() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut aws = TestAws::new().await?;
    population(&db).await?;
    let reporter = reporter(&db, &mut aws).await?;

    let weekly = weekly_analysis::Deps {
        reporter: reporter.clone(),
    };
    let summary = weekly_analysis::handle(json!({"date": DAY}), &weekly)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(summary["details"]["week_start"], "2026-11-16");
    let (genres, daily, active): (Value, Value, i32) = sqlx::query_as(
        "SELECT genres, daily, weekly_active FROM weekly_analyses WHERE week_start = '2026-11-16'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        genres[0]["genre"], "GENRE-1",
        "the bigger cluster's genre leads: {genres}"
    );
    assert!(
        daily
            .as_array()
            .is_some_and(|d| !d.is_empty() && d.len() <= 7)
    );
    assert!(active > 0);
    // A re-run replaces the week.
    weekly_analysis::handle(json!({"date": DAY}), &weekly)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(db.count("SELECT count(*) FROM weekly_analyses").await?, 1);

    let monthly = monthly_report::Deps {
        reporter,
        s3: aws.s3.clone(),
        report_bucket: aws.bucket.clone(),
    };
    let summary = monthly_report::handle(json!({"date": DAY}), &monthly)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(summary["details"]["month"], "2026-11");
    let keys = aws.object_keys().await?;
    for name in [
        "report.html",
        "daily.csv",
        "genres.csv",
        "titles.csv",
        "recommendations.csv",
    ] {
        assert!(
            keys.contains(&format!("reports/monthly/2026-11/{name}")),
            "{keys:?}"
        );
    }
    let html = String::from_utf8(aws.object("reports/monthly/2026-11/report.html").await?)?;
    assert!(html.contains("<svg") && html.contains("GENRE-1") && html.contains("작품"));
    for external in ["<script", "src=", "href=", "url("] {
        assert!(
            !html.contains(external),
            "the report refers to something outside: {external}"
        );
    }
    let genres_csv = String::from_utf8(aws.object("reports/monthly/2026-11/genres.csv").await?)?;
    assert!(
        genres_csv.contains("GENRE-0") && genres_csv.contains("GENRE-1"),
        "{genres_csv}"
    );

    // The link the operators got opens the page.
    let link = summary["details"]["link"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let fetched = reqwest::get(&link).await?;
    assert!(
        fetched.status().is_success(),
        "{link}: {}",
        fetched.status()
    );
    assert_eq!(fetched.text().await?, html);
    let messages = aws.drain("operator-alerts").await?;
    assert!(
        messages
            .iter()
            .any(|m| m["details"]["link"] == link.as_str())
    );

    // The top 20 titles: as many rows as titles read in the month, at most 20 (the reads
    // table says how many were read).
    let titles_csv = String::from_utf8(aws.object("reports/monthly/2026-11/titles.csv").await?)?;
    let read_in_month = db
        .count(
            "SELECT count(DISTINCT webtoon_id) FROM user_webtoon_events
              WHERE occurred_at >= '2026-11-01T00:00:00+09:00'
                AND occurred_at < '2026-12-01T00:00:00+09:00'",
        )
        .await?;
    assert_eq!(
        titles_csv.trim_end().split("\r\n").count() as i64 - 1,
        read_in_month.min(20),
        "{titles_csv}"
    );

    // A re-run for the month writes the same page and the same tables, byte for byte.
    let names = [
        "daily.csv",
        "genres.csv",
        "titles.csv",
        "recommendations.csv",
    ];
    let mut tables = Vec::new();
    for name in names {
        tables.push(
            aws.object(&format!("reports/monthly/2026-11/{name}"))
                .await?,
        );
    }
    monthly_report::handle(json!({"date": DAY}), &monthly)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        String::from_utf8(aws.object("reports/monthly/2026-11/report.html").await?)?,
        html
    );
    for (name, before) in names.iter().zip(&tables) {
        assert_eq!(
            &aws.object(&format!("reports/monthly/2026-11/{name}"))
                .await?,
            before,
            "{name}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_sqs_outage_mid_collection_is_retried_and_loses_nothing() -> anyhow::Result<()> {
    let mut c = Collection::new().await?;
    serve(
        &c.server,
        vec![
            (
                "/naver.json",
                page(vec![entry("n1", "하늘"), entry("n2", "바다")], None),
            ),
            ("/kakao.json", page(vec![entry("k1", "별")], None)),
            ("/lezhin.json", page(vec![], None)),
        ],
    )
    .await;
    // SQS unreachable: every send fails, nothing is recorded as sent, the run is retried.
    let healthy = c.deps.sqs.clone();
    c.deps.sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&c.aws.sdk)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let err = c.run().await.expect_err("an outage fails the run");
    assert!(err.is_retryable(), "{err}");
    let summary = c.summary().await?;
    assert_eq!(summary["failed_titles"], 3, "{summary}");
    assert_eq!(c.db.count("SELECT count(*) FROM catalog_entries").await?, 0);
    // The retry, SQS back: every title sent once.
    c.deps.sqs = healthy;
    let summary = c.run().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(summary["new_titles"], 3);
    assert_eq!(c.deliver("webtoon-create-request").await?.len(), 3);
    assert_eq!(c.db.count("SELECT count(*) FROM catalog_entries").await?, 3);
    Ok(())
}

#[tokio::test]
async fn a_database_outage_keeps_the_served_set_and_bad_input_is_refused() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut aws = TestAws::new().await?;
    population(&db).await?;
    let proxy = integration_tests::TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let mut deps = recommendations::Deps {
        reporter: reporter(&db, &mut aws).await?,
    };
    recommend_the_day(&deps).await?;
    let served: i64 = sqlx::query_scalar("SELECT DISTINCT set_id FROM current_recommendations")
        .fetch_one(&db.pool)
        .await?;

    // Bad input is permanent, with its reason; nothing runs.
    for bad in [
        json!({"date": "yesterday"}),
        json!({"date": "2999-01-01"}),
        json!({"dae": DAY}),
        json!([1]),
    ] {
        let err = recommendations::handle(bad.clone(), &deps)
            .await
            .expect_err("refused");
        assert!(!err.is_retryable(), "{bad}: {err}");
    }

    // The database goes away: the run fails as retryable and readers keep yesterday's set.
    deps.reporter.db = proxy.pool_for(&db);
    proxy.cut();
    let err = recommendations::handle(json!({"date": DAY}), &deps)
        .await
        .expect_err("outage");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT DISTINCT set_id FROM current_recommendations")
            .fetch_one(&db.pool)
            .await?,
        served
    );
    proxy.restore();
    let again = recommend_the_day(&deps).await?;
    assert!(again["details"]["set_id"].as_i64() > Some(served));

    // What a broken or hostile app could write is refused by the table, and a retried write
    // (the same event id) is a no-op.
    let title: i64 = sqlx::query_scalar("SELECT min(id) FROM webtoons")
        .fetch_one(&db.pool)
        .await?;
    for (user, webtoon, kind, episode) in [
        (0_i64, title, "view", None),
        (1, title, "purchase", None),
        (1, title, "episode_read", None),
        (1, title, "view", Some(3)),
        (1, -5, "view", None),
    ] {
        let inserted = sqlx::query(
            "INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, episode_number, occurred_at)
             VALUES (gen_random_uuid(), $1, $2, $3, $4, now())",
        )
        .bind(user)
        .bind(webtoon)
        .bind(kind)
        .bind(episode)
        .execute(&db.pool)
        .await;
        assert!(
            inserted.is_err(),
            "({user}, {webtoon}, {kind}, {episode:?}) was accepted"
        );
    }
    let id = uuid::Uuid::new_v4();
    for _ in 0..2 {
        sqlx::query(
            "INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, occurred_at)
             VALUES ($1, 7, $2, 'like', now()) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(id)
        .bind(title)
        .execute(&db.pool)
        .await?;
    }
    assert_eq!(db.count("SELECT count(*) FROM user_webtoon_events WHERE kind = 'like' AND user_id = 7 AND occurred_at > now() - interval '1 minute'").await?, 1);
    Ok(())
}
