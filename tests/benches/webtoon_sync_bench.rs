//! `make bench`: webtoon-sync messages/s on 10- and 100-message batches against the local stack
//! (PostgreSQL, moto's S3 and SQS, a local image server). Two workloads: requests carrying
//! images (download, hash, S3 HeadObject/PutObject) and metadata-only requests. Figures go to
//! stdout and to target/bench/results.json; there is no pass/fail.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use integration_tests::{BenchResult, Fixture, failed_ids, record_bench, unique};
use serde_json::json;

/// A batch of create requests for distinct webtoons, each with five episodes.
fn batch(size: usize, queue_prefix: &str, image_base: Option<&str>) -> anyhow::Result<SqsEvent> {
    let run = unique("");
    let image = |name: &str| image_base.map(|base| format!("{base}/{name}"));
    let records: Vec<_> = (0..size)
        .map(|i| {
            let episodes: Vec<_> = (1..=5)
                .map(|n| {
                    json!({"number": n, "title": format!("Episode {n}"),
                           "thumbnail_url": image(&format!("episode-{}.png", n % 2 + 1)),
                           "published_at": "2026-10-01"})
                })
                .collect();
            let body = json!({
                "request_id": format!("bench-{run}-{i}"), "platform": "NAVER",
                "external_id": format!("{run}-{i}"), "requested_at": "2026-11-20T00:00:00Z",
                "title": format!("Bench webtoon {i}"), "status": "ONGOING", "rating": 9.1,
                "age_rating": "ALL", "genres": ["DRAMA", "ACTION"], "publish_days": ["MON"],
                "authors": [{"name": format!("Writer {}", i % 50), "role": "WRITER"}],
                "thumbnail_url": image("thumbnail.png"), "cover_image_url": image("cover.png"),
                "episodes": episodes,
            });
            json!({
                "messageId": format!("m-{run}-{i}"),
                "body": body.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:ap-northeast-2:123456789012:{queue_prefix}-webtoon-create-request"),
            })
        })
        .collect();
    Ok(serde_json::from_value(json!({ "Records": records }))?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let (aws, images) = (&fixture.aws, &fixture.images);
    let deps = fixture.deps()?;

    println!("webtoon-sync: messages/s per batch (local PostgreSQL, moto S3/SQS, local images)");
    println!(
        "{:<34} {:>8} {:>12} {:>12}",
        "workload", "batches", "median ms", "messages/s"
    );
    let mut results = Vec::new();
    for (workload, image_base) in [
        ("metadata-only", None),
        ("with-images", Some(images.base.as_str())),
    ] {
        for (size, rounds) in [(10_usize, 15_usize), (100, 5)] {
            // One warm-up batch (pool connections, first S3 objects), then measured rounds.
            handle_checked(batch(size, &aws.prefix, image_base)?, &deps).await?;
            aws.drain("webtoon-create-complete").await?;
            let mut times = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let event = batch(size, &aws.prefix, image_base)?;
                let started = Instant::now();
                handle_checked(event, &deps).await?;
                times.push(started.elapsed());
                // Untimed: keep the completion queue short, as the real consumers would.
                aws.drain("webtoon-create-complete").await?;
            }
            times.sort();
            let median = times[times.len() / 2];
            let rate = size as f64 / median.as_secs_f64();
            let name = format!("webtoon-sync/{workload}/batch-{size}");
            println!("{name:<34} {rounds:>8} {:>12.1} {rate:>12.0}", ms(median));
            results.push(BenchResult {
                name,
                unit: "messages/s".to_owned(),
                value: rate.round(),
                baselines: Default::default(),
            });
        }
    }
    let path = record_bench(&results)?;
    println!("figures written to {}", path.display());
    Ok(())
}

async fn handle_checked(event: SqsEvent, deps: &webtoon_sync::Deps) -> anyhow::Result<()> {
    let response = webtoon_sync::handle(event, deps).await;
    anyhow::ensure!(
        failed_ids(&response).is_empty(),
        "benchmark batch had failures: {response:?}"
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
