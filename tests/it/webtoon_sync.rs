//! webtoon-sync against the real stack: PostgreSQL, the local S3/SQS endpoint and a local image
//! server. Every test delivers events from `events/`, then delivers them again, and asserts one
//! effect: the same rows, the same objects, one completion per request.

use std::collections::HashMap;

use integration_tests::{
    Fixture, ImageServer, canned, failed_ids, load_event, redelivered, webtoon_deps,
};
use serde_json::Value;
use webtoon_sync::handle;

fn outcomes(messages: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m["request_id"].as_str().unwrap_or_default().to_owned(),
                m["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn create_update_duplicate_and_poison_in_one_batch() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let Fixture { db, aws, images } = &f;
    let deps = f.deps()?;
    let create = f.event("webtoon-sync-create.json")?;
    let update = f.event("webtoon-sync-update.json")?;
    let mixed = f.event("webtoon-sync-mixed-batch.json")?;

    let response = handle(create.clone(), &deps).await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let created = aws.drain("webtoon-create-complete").await?;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["outcome"], "created");
    let webtoon_id = created[0]["webtoon_id"].as_i64().expect("webtoon id");
    assert_eq!(db.count("SELECT count(*) FROM episodes").await?, 2);
    assert_eq!(db.count("SELECT count(*) FROM webtoon_authors").await?, 2);
    // thumbnail, cover and two episode images: four distinct files, four objects.
    assert_eq!(aws.object_keys().await?.len(), 4);

    // One batch: the update, a redelivery of the create, a valid create for another webtoon and
    // two poison messages (malformed JSON, unknown platform).
    let mut batch = redelivered(&create, "again");
    batch.records.extend(update.records.clone());
    batch.records.extend(mixed.records.clone());
    let poison: Vec<String> = mixed.records[1..]
        .iter()
        .filter_map(|r| r.message_id.clone())
        .collect();
    let response = handle(batch.clone(), &deps).await;
    assert_eq!(
        failed_ids(&response),
        poison,
        "only the poison messages fail"
    );

    assert_eq!(
        outcomes(&aws.drain("webtoon-create-complete").await?),
        [(
            "c3d9a4e2-7b1f-4a0e-8e6d-2f5b1c9a0e03".to_owned(),
            "created".to_owned()
        )],
        "the duplicate create sends nothing; the other webtoon is created"
    );
    let updated = aws.drain("webtoon-update-complete").await?;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["outcome"], "updated");
    assert_eq!(updated[0]["webtoon_id"].as_i64(), Some(webtoon_id));

    let (status, rating, title): (String, f64, String) = sqlx::query_as(
        "SELECT status, rating, title FROM webtoons WHERE platform = 'NAVER' AND external_id = '783053'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!((status.as_str(), rating), ("HIATUS", 9.64));
    assert_eq!(
        title, "등대지기 (The Lighthouse Keeper)",
        "a partial update keeps the title"
    );
    let episodes: Vec<(i32, String, Option<String>)> = sqlx::query_as(
        "SELECT number, title, thumbnail_key FROM episodes WHERE webtoon_id = $1 ORDER BY number",
    )
    .bind(webtoon_id)
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(episodes.len(), 3);
    assert_eq!(episodes[1].1, "Episode 2. The Storm (revised)");
    assert!(
        episodes[1].2.is_some(),
        "an update without a thumbnail keeps the stored one"
    );
    assert_eq!(
        episodes[2].2, episodes[0].2,
        "same image bytes, same content-addressed key"
    );
    let genres = db
        .count("SELECT count(*) FROM webtoon_genres wg JOIN webtoons w ON w.id = wg.webtoon_id WHERE w.external_id = '783053'")
        .await?;
    assert_eq!(genres, 3);

    // The whole batch again (SQS redelivers after a lost response): nothing changes.
    let before = (db.snapshot().await?, aws.object_keys().await?);
    let response = handle(redelivered(&batch, "replay"), &deps).await;
    assert_eq!(failed_ids(&response).len(), poison.len());
    assert_eq!((db.snapshot().await?, aws.object_keys().await?), before);
    assert!(aws.drain("webtoon-create-complete").await?.is_empty());
    assert!(aws.drain("webtoon-update-complete").await?.is_empty());
    // Images already stored for a webtoon are not downloaded again (episode 3 reuses the
    // episode-1 URL); thumbnail.png is fetched once per webtoon that names it.
    assert_eq!(images.hits("/cover.png").await, 1);
    assert_eq!(images.hits("/episode-1.png").await, 1);
    assert_eq!(images.hits("/thumbnail.png").await, 2);
    Ok(())
}

#[tokio::test]
async fn a_crash_before_the_completion_resends_the_same_completion_once() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let Fixture { db, aws, .. } = &f;
    let create = f.event("webtoon-sync-create.json")?;

    // First delivery: the change commits, then sending the completion fails (queue gone).
    let mut broken = f.deps()?;
    broken.queues.create_url = format!("{}-missing", broken.queues.create_url);
    let response = handle(create.clone(), &broken).await;
    assert_eq!(
        failed_ids(&response).len(),
        1,
        "the message is handed back for redelivery"
    );
    let after_crash = db.snapshot().await?;
    let recorded: Value = sqlx::query_scalar("SELECT completion FROM webtoon_requests")
        .fetch_one(&db.pool)
        .await?;

    // Redelivery: no second write, the recorded completion goes out; a third delivery is a no-op.
    let deps = f.deps()?;
    for attempt in ["retry", "again"] {
        let response = handle(redelivered(&create, attempt), &deps).await;
        assert!(failed_ids(&response).is_empty(), "{response:?}");
    }
    let sent = aws.drain("webtoon-create-complete").await?;
    assert_eq!(
        sent,
        [recorded],
        "exactly one completion, identical to the recorded one"
    );
    let rows_now: Vec<String> = db
        .snapshot()
        .await?
        .into_iter()
        .filter(|row| !row.starts_with("webtoon_requests"))
        .collect();
    let rows_then: Vec<String> = after_crash
        .into_iter()
        .filter(|row| !row.starts_with("webtoon_requests"))
        .collect();
    assert_eq!(rows_now, rows_then);
    Ok(())
}

#[tokio::test]
async fn a_database_outage_fails_the_messages_and_the_retry_converges() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let Fixture { db, aws, .. } = &f;
    let create = f.event("webtoon-sync-create.json")?;

    let mut down = f.deps()?;
    let mut config = integration_tests::db_config();
    config.acquire_timeout = std::time::Duration::from_millis(500);
    down.db = adapters::db::pool_with(&config, db.options.clone().port(1));
    let response = handle(create.clone(), &down).await;
    assert_eq!(
        failed_ids(&response).len(),
        1,
        "a retryable failure is reported, not dropped"
    );
    assert_eq!(db.count("SELECT count(*) FROM webtoons").await?, 0);

    let deps = f.deps()?;
    let response = handle(redelivered(&create, "retry"), &deps).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(db.count("SELECT count(*) FROM webtoons").await?, 1);
    assert_eq!(aws.drain("webtoon-create-complete").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn concurrent_deliveries_of_one_request_apply_it_once() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let Fixture { db, aws, .. } = &f;
    let deps = f.deps()?;
    let create = f.event("webtoon-sync-create.json")?;

    let (a, b) = tokio::join!(
        handle(redelivered(&create, "a"), &deps),
        handle(redelivered(&create, "b"), &deps)
    );
    assert!(failed_ids(&a).is_empty() && failed_ids(&b).is_empty());
    assert_eq!(aws.drain("webtoon-create-complete").await?.len(), 1);
    assert_eq!(db.count("SELECT count(*) FROM webtoons").await?, 1);
    assert_eq!(db.count("SELECT count(*) FROM episodes").await?, 2);
    Ok(())
}

#[tokio::test]
async fn late_and_unknown_updates_change_nothing() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let Fixture { db, aws, .. } = &f;
    let deps = f.deps()?;
    let update = f.event("webtoon-sync-update.json")?;

    // An update before any create: nothing to update.
    assert!(failed_ids(&handle(update.clone(), &deps).await).is_empty());
    let sent = aws.drain("webtoon-update-complete").await?;
    assert_eq!(sent[0]["outcome"], "not_found");
    assert_eq!(sent[0]["webtoon_id"], Value::Null);

    // Create, then an update requested before the create arrives late: stale, ignored.
    let create = f.event("webtoon-sync-create.json")?;
    assert!(failed_ids(&handle(create, &deps).await).is_empty());
    let mut late = update.clone();
    for record in &mut late.records {
        let body = record.body.take().unwrap_or_default();
        record.body = Some(
            body.replace("2026-11-20T18:30:00Z", "2026-11-20T16:00:00Z")
                .replace("9b7e3d10", "late0000"),
        );
    }
    let before = db.count("SELECT count(*) FROM episodes").await?;
    assert!(failed_ids(&handle(late, &deps).await).is_empty());
    let sent = aws.drain("webtoon-update-complete").await?;
    assert_eq!(sent[0]["outcome"], "stale");
    assert_eq!(db.count("SELECT count(*) FROM episodes").await?, before);
    let status: String = sqlx::query_scalar("SELECT status FROM webtoons")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(status, "ONGOING");
    Ok(())
}

#[tokio::test]
async fn bad_images_are_reported_and_the_webtoon_is_still_saved() -> anyhow::Result<()> {
    let mut routes = HashMap::new();
    routes.insert(
        "/thumbnail.png".to_owned(),
        canned::png(vec![0_u8; 5 * 1024 * 1024 + 1]),
    );
    routes.insert(
        "/cover.png".to_owned(),
        canned::ok("text/html", b"<html>".to_vec()),
    );
    routes.insert(
        "/episode-1.png".to_owned(),
        canned::redirect("http://169.254.169.254/latest/meta-data/"),
    );
    let f = Fixture::with_images(ImageServer::start(routes).await?).await?; // episode-2.png: 404
    let Fixture { db, aws, .. } = &f;
    let deps = f.deps()?;
    let create = f.event("webtoon-sync-create.json")?;

    assert!(failed_ids(&handle(create, &deps).await).is_empty());
    let sent = aws.drain("webtoon-create-complete").await?;
    assert_eq!(sent[0]["outcome"], "created");
    let reasons: Vec<&str> = sent[0]["image_failures"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["reason"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not a supported image")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("larger than")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("refused")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("404")), "{reasons:?}");
    assert!(aws.object_keys().await?.is_empty());
    assert_eq!(
        db.count("SELECT count(*) FROM webtoons WHERE thumbnail_key IS NULL")
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn loopback_images_are_refused_without_the_allowlist_and_server_errors_retry()
-> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let Fixture { db, aws, images } = &f;
    let create = f.event("webtoon-sync-create.json")?;
    let strict = webtoon_deps(db, aws, &[])?;
    assert!(failed_ids(&handle(create, &strict).await).is_empty());
    let sent = aws.drain("webtoon-create-complete").await?;
    assert_eq!(sent[0]["image_failures"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        images.hits("/thumbnail.png").await,
        0,
        "no connection was made"
    );

    let mut routes = HashMap::new();
    routes.insert("/thumbnail.png".to_owned(), canned::status(503));
    let flaky = ImageServer::start(routes).await?;
    let other = load_event("webtoon-sync-mixed-batch.json", &flaky.base, &aws.prefix)?;
    let good_id = other.records[0].message_id.clone().unwrap_or_default();
    let response = handle(other, &f.deps()?).await;
    assert!(
        failed_ids(&response).contains(&good_id),
        "a 503 image retries the message"
    );
    Ok(())
}
