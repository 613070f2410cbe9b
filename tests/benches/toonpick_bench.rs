//! `make bench`: TOONPICK's scheduled work at the volumes (issue 19).
//!
//! - recommendations for 100,000 readers × 20,000 titles × 5,000,000 events (plus the held-out
//!   day's 100,000 reads): wall time of the whole generation (read, evaluate, train, score,
//!   write the set) beside the target (≤ 60 s), and the process's peak RSS beside its target
//!   (≤ 1 GB).
//! - daily-collection of 10,000 catalog entries (10 pages of 1,000, at the production pace of
//!   2 requests per second) with 10 % changed since the last collection: wall time beside the
//!   target (≤ 10 s), and update requests per second into SQS (the local endpoint): over the
//!   paced run, and again with the feed unpaced, which leaves diffing and sending.
//!
//! Figures go to stdout and target/bench/results.json; there is no pass/fail.

use std::time::{Duration, Instant};

use adapters::guarded_http::{FetchPolicy, GuardedClient};
use adapters::jobs::Reporter;
use chrono::{NaiveDate, Utc};
use domain::calendar::{kst_date, sub_days};
use domain::catalog::{parse_feeds, prepare};
use domain::webtoon::Platform;
use integration_tests::{
    BenchResult, Population, TestAws, TestDb, db_config, peak_rss_mib, record_bench,
    reset_peak_rss, seed_events, seed_titles,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const READERS: i64 = 100_000;
const TITLES: i64 = 20_000;
const EVENTS_PER_READER: i64 = 50;
const RECS_TARGET_SECS: f64 = 60.0;
const RSS_TARGET_MIB: f64 = 1024.0;
const ENTRIES: usize = 10_000;
const PAGE: usize = 1_000;
const COLLECTION_TARGET_SECS: f64 = 10.0;

fn job_pool(db: &TestDb) -> PgPool {
    let config = adapters::config::DatabaseConfig {
        statement_timeout: Duration::from_secs(1800),
        ..db_config()
    };
    adapters::db::pool_with(&config, db.options.clone())
}

async fn bench_recommendations(db: &PgPool, day: NaiveDate) -> anyhow::Result<Vec<BenchResult>> {
    eprintln!(
        "recommendations: seeding {TITLES} titles and {READERS} readers × {EVENTS_PER_READER} events"
    );
    let started = Instant::now();
    seed_titles(db, TITLES, 50).await?;
    seed_events(
        db,
        day,
        Population {
            titles: TITLES,
            readers: READERS,
            events_per_reader: EVENTS_PER_READER,
            clusters: 50,
            days: 60,
        },
    )
    .await?;
    eprintln!("  seed: {:.1} s", started.elapsed().as_secs_f64());

    reset_peak_rss();
    let started = Instant::now();
    let generated = recommendations::generate(db, day, false)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    eprintln!(
        "  generate: {secs:.1} s, peak RSS {rss:.0} MiB; {} readers, {} rows, {} pairs; evaluation {:?}",
        generated.readers, generated.rows, generated.history_pairs, generated.evaluation
    );
    let mut results = vec![
        BenchResult::new(
            "recommendations: 100k readers × 20k titles × 5M events, wall time",
            "s",
            secs,
            &[("target", RECS_TARGET_SECS)],
        ),
        BenchResult::new(
            "recommendations: peak RSS",
            "MiB",
            rss,
            &[("target", RSS_TARGET_MIB)],
        ),
    ];
    for eval in &generated.evaluation {
        results.push(BenchResult::new(
            &format!("recommendations: precision@10 of {}", eval.variant),
            "ratio",
            eval.precision_at_10,
            &[],
        ));
    }
    Ok(results)
}

fn entry(i: usize, edition: &str) -> Value {
    json!({
        "external_id": format!("bench-{i}"),
        "title": format!("작품 {i} {edition}"),
        "status": "ONGOING",
        "rating": 9.1,
        "genres": ["DRAMA", "ROMANCE"],
        "authors": [{"name": format!("작가 {}", i % 500), "role": "WRITER"}],
        "publish_days": ["MON"],
        "episodes": (1..=5).map(|n| json!({"number": n, "title": format!("{n}화")})).collect::<Vec<_>>()
    })
}

async fn bench_collection(db: &TestDb) -> anyhow::Result<Vec<BenchResult>> {
    let mut aws = TestAws::new().await?;
    let server = MockServer::start().await;
    let pages = ENTRIES / PAGE;
    for p in 0..pages {
        let entries: Vec<Value> = (p * PAGE..(p + 1) * PAGE)
            .map(|i| entry(i, if i % 10 == 0 { "(개정)" } else { "" }))
            .collect();
        let next = (p + 1 < pages).then(|| format!("page-{}.json", p + 1));
        Mock::given(method("GET"))
            .and(path(format!("/page-{p}.json")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"entries": entries, "next": next})),
            )
            .mount(&server)
            .await;
    }
    // The last collection saw every title, a tenth of them before their change.
    let now = Utc::now();
    let (mut ids, mut hashes) = (Vec::new(), Vec::new());
    for i in 0..ENTRIES {
        let prepared =
            prepare(Platform::Naver, entry(i, ""), now).map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.push(prepared.external_id.clone());
        hashes.push(prepared.content_hash.clone());
    }
    let last_collection = (ids, hashes);
    seed_last_collection(&db.pool, &last_collection).await?;

    let policy = FetchPolicy {
        allow_hosts: vec!["127.0.0.1".to_owned()],
        ..daily_collection::default_policy()
    };
    let mut deps = daily_collection::Deps {
        reporter: Reporter {
            db: db.pool.clone(),
            sns: adapters::aws::sns(&aws.sdk),
            topic_arn: aws.subscribed_topic("operator-alerts").await?,
        },
        sqs: aws.sqs.clone(),
        client: GuardedClient::new(&policy, "bench")?,
        feeds: parse_feeds(&format!("NAVER={}/page-0.json", server.uri()))?,
        create_queue_url: aws.queue_url("webtoon-create-request").to_owned(),
        update_queue_url: aws.queue_url("webtoon-update-request").to_owned(),
        pace: daily_collection::Pace::new(None, None),
    };
    eprintln!("daily-collection: {ENTRIES} entries in {pages} pages, 10 % changed");
    let day = sub_days(kst_date(now), 1);
    let (summary, secs) = collect(day, &deps).await?;
    let changed = summary["changed_titles"].as_f64().unwrap_or(0.0);
    eprintln!(
        "  collect: {secs:.2} s; fetched {}, changed {changed}, unchanged {}, failed {}",
        summary["fetched"], summary["unchanged_titles"], summary["failed_titles"]
    );
    // The next night, nothing changed: the feed's pace and the diff, without sending.
    let (again, quiet) = collect(day, &deps).await?;
    eprintln!(
        "  re-run: {quiet:.2} s; unchanged {}",
        again["unchanged_titles"]
    );
    // The same change again with the feed unpaced: what is left is diffing and sending, so
    // this is the rate the function gets requests into SQS.
    seed_last_collection(&db.pool, &last_collection).await?;
    deps.pace = daily_collection::Pace::new(Some(1_000.0), None);
    let (unpaced, sending) = collect(day, &deps).await?;
    let sent = unpaced["changed_titles"].as_f64().unwrap_or(0.0);
    eprintln!("  unpaced: {sending:.2} s; changed {sent}");
    Ok(vec![
        BenchResult::new(
            "daily-collection: 10k entries, nothing changed (re-run), wall time",
            "s",
            quiet,
            &[("target", COLLECTION_TARGET_SECS)],
        ),
        BenchResult::new(
            "daily-collection: 10k entries, 10 % changed, wall time",
            "s",
            secs,
            &[("target", COLLECTION_TARGET_SECS)],
        ),
        BenchResult::new(
            "daily-collection: update requests into SQS, at the feed's pace",
            "req/s",
            changed / secs,
            &[],
        ),
        BenchResult::new(
            "daily-collection: update requests into SQS, feed unpaced",
            "req/s",
            sent / sending,
            &[],
        ),
    ])
}

/// One collection for `day`: its summary and wall time in seconds.
async fn collect(day: NaiveDate, deps: &daily_collection::Deps) -> anyhow::Result<(Value, f64)> {
    let started = Instant::now();
    let summary = daily_collection::handle(json!({ "date": day }), deps)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((summary, started.elapsed().as_secs_f64()))
}

/// What the last collection saw: every title, a tenth of them before their change.
async fn seed_last_collection(
    db: &PgPool,
    (ids, hashes): &(Vec<String>, Vec<String>),
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM catalog_entries")
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO catalog_entries (platform, external_id, content_hash, request_id, first_seen_on, changed_on, seen_on)
         SELECT 'NAVER', e.id, e.hash, 'seeded-' || e.n, '2026-11-01', '2026-11-01', '2026-11-01'
           FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS e (id, hash, n)",
    )
    .bind(ids)
    .bind(hashes)
    .execute(db)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted = integration_tests::bench_filter();
    let mut results = Vec::new();
    if wanted("recommendations") {
        let db = TestDb::new().await?;
        let day = sub_days(kst_date(Utc::now()), 1);
        results.extend(bench_recommendations(&job_pool(&db), day).await?);
    }
    if wanted("collection") {
        let db = TestDb::new().await?;
        results.extend(bench_collection(&db).await?);
    }
    for r in &results {
        println!(
            "{:<70} {:>10.3} {:<5} {:?}",
            r.name, r.value, r.unit, r.baselines
        );
    }
    let path = record_bench(&results)?;
    println!("figures written to {}", path.display());
    Ok(())
}
