//! Postgres writes for webtoon requests. One transaction per request: claim the request id in
//! the ledger, apply the change set-based (authors, genres and episodes in one statement each,
//! never a round trip per row), record the completion.

use std::collections::HashMap;

use adapters::db::classify;
use chrono::{NaiveDate, Utc};
use domain::WorkerError;
use domain::webtoon::{Completion, ImageFailure, Outcome, RequestKind, WebtoonKey, WebtoonRequest};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use url::Url;

pub struct PriorRequest {
    pub completion: Completion,
    pub completion_sent: bool,
}

pub enum Applied {
    /// This delivery applied the request; its completion is still to be sent.
    Recorded(Completion),
    /// Another delivery of the same request id committed first.
    AlreadyRecorded,
}

pub async fn find_request(
    db: &PgPool,
    request_id: &str,
) -> Result<Option<PriorRequest>, WorkerError> {
    let row = sqlx::query_file!("sql/find_request.sql", request_id)
        .fetch_optional(db)
        .await
        .map_err(classify)?;
    Ok(row.map(|row| PriorRequest {
        completion: row.completion.0,
        completion_sent: row.completion_sent,
    }))
}

pub async fn mark_sent(db: &PgPool, request_id: &str) -> Result<(), WorkerError> {
    sqlx::query_file!("sql/mark_sent.sql", request_id)
        .execute(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// The S3 keys already stored for this webtoon's image URLs, so unchanged images are not
/// downloaded again.
pub async fn known_images(
    db: &PgPool,
    key: &WebtoonKey,
    urls: &[&Url],
) -> Result<HashMap<String, String>, WorkerError> {
    if urls.is_empty() {
        return Ok(HashMap::new());
    }
    let urls: Vec<&str> = urls.iter().map(|u| u.as_str()).collect();
    let rows = sqlx::query_file!(
        "sql/known_images.sql",
        key.platform.as_str(),
        key.external_id,
        &urls as &[&str],
    )
    .fetch_all(db)
    .await
    .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(|image| (image.url, image.key))
        .collect())
}

/// Applies a request in one transaction.
pub async fn apply(
    db: &PgPool,
    request: &WebtoonRequest,
    images: &HashMap<String, String>,
    image_failures: Vec<ImageFailure>,
) -> Result<Applied, WorkerError> {
    let mut tx = db.begin().await.map_err(classify)?;

    // Claim the request id first (`sql/claim_request.sql`).
    let claimed = sqlx::query_file!(
        "sql/claim_request.sql",
        request.request_id,
        request.kind.as_str(),
    )
    .execute(&mut *tx)
    .await
    .map_err(classify)?
    .rows_affected();
    if claimed == 0 {
        return Ok(Applied::AlreadyRecorded);
    }

    let (webtoon_id, outcome) = upsert_webtoon(&mut tx, request, images).await?;
    if let (Some(id), Outcome::Created | Outcome::Updated) = (webtoon_id, outcome) {
        replace_authors(&mut tx, id, request).await?;
        replace_genres(&mut tx, id, request).await?;
        upsert_episodes(&mut tx, id, request, images).await?;
    }

    let completion = Completion {
        request_id: request.request_id.clone(),
        kind: request.kind,
        platform: request.key.platform,
        external_id: request.key.external_id.clone(),
        webtoon_id,
        outcome,
        image_failures,
        completed_at: Utc::now(),
    };
    sqlx::query_file!(
        "sql/complete_request.sql",
        request.request_id,
        webtoon_id,
        outcome.as_str(),
        Json(&completion) as _,
    )
    .execute(&mut *tx)
    .await
    .map_err(classify)?;

    tx.commit().await.map_err(classify)?;
    Ok(Applied::Recorded(completion))
}

async fn upsert_webtoon(
    tx: &mut Transaction<'_, Postgres>,
    request: &WebtoonRequest,
    images: &HashMap<String, String>,
) -> Result<(Option<i64>, Outcome), WorkerError> {
    let f = &request.fields;
    let image = |url: &Option<Url>| url.as_ref().and_then(|u| images.get(u.as_str()).cloned());
    let publish_days: Option<Vec<&str>> = f
        .publish_days
        .as_ref()
        .map(|days| days.iter().map(|d| d.as_str()).collect());
    let publish_days = publish_days.as_deref();
    let (thumbnail_url, thumbnail_key) = (
        f.thumbnail_url.as_ref().map(Url::as_str),
        image(&f.thumbnail_url),
    );
    let (cover_url, cover_key) = (
        f.cover_image_url.as_ref().map(Url::as_str),
        image(&f.cover_image_url),
    );
    // Two statements with one SET list and one parameter list between them (see the files);
    // a macro, as each file is checked at compile time.
    macro_rules! upsert {
        ($file:tt) => {
            sqlx::query_file!(
                $file,
                request.key.platform.as_str(),
                request.key.external_id,
                f.title.as_deref(),
                f.status.map(|s| s.as_str()),
                f.rating,
                f.age_rating.map(|a| a.as_str()),
                publish_days as Option<&[&str]>,
                thumbnail_url,
                thumbnail_key,
                cover_url,
                cover_key,
                request.requested_at,
            )
            .fetch_optional(&mut **tx)
            .await
            .map(|row| row.map(|r| (r.id, r.created)))
        };
    }
    let applied = match request.kind {
        RequestKind::Create => upsert!("sql/create_webtoon.sql"),
        RequestKind::Update => upsert!("sql/update_webtoon.sql"),
    }
    .map_err(classify)?;
    if let Some((id, inserted)) = applied {
        let outcome = if inserted {
            Outcome::Created
        } else {
            Outcome::Updated
        };
        return Ok((Some(id), outcome));
    }
    // Nothing written: either the stored data is newer, or an update names an unknown webtoon.
    let existing = sqlx::query_file_scalar!(
        "sql/webtoon_id.sql",
        request.key.platform.as_str(),
        request.key.external_id,
    )
    .fetch_optional(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(match existing {
        Some(id) => (Some(id), Outcome::Stale),
        None => (None, Outcome::NotFound),
    })
}

async fn replace_authors(
    tx: &mut Transaction<'_, Postgres>,
    webtoon_id: i64,
    request: &WebtoonRequest,
) -> Result<(), WorkerError> {
    let Some(authors) = &request.fields.authors else {
        return Ok(());
    };
    let names: Vec<&str> = authors.iter().map(|a| a.name.as_str()).collect();
    let roles: Vec<&str> = authors.iter().map(|a| a.role.as_str()).collect();
    sqlx::query_file!("sql/add_authors.sql", &names as &[&str])
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    sqlx::query_file!(
        "sql/replace_authors.sql",
        webtoon_id,
        &names as &[&str],
        &roles as &[&str],
    )
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

async fn replace_genres(
    tx: &mut Transaction<'_, Postgres>,
    webtoon_id: i64,
    request: &WebtoonRequest,
) -> Result<(), WorkerError> {
    let Some(genres) = &request.fields.genres else {
        return Ok(());
    };
    sqlx::query_file!("sql/add_genres.sql", genres)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    sqlx::query_file!("sql/replace_genres.sql", webtoon_id, genres)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(())
}

async fn upsert_episodes(
    tx: &mut Transaction<'_, Postgres>,
    webtoon_id: i64,
    request: &WebtoonRequest,
    images: &HashMap<String, String>,
) -> Result<(), WorkerError> {
    let episodes = &request.fields.episodes;
    if episodes.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i32> = episodes.iter().map(|e| e.number).collect();
    let titles: Vec<&str> = episodes.iter().map(|e| e.title.as_str()).collect();
    let urls: Vec<Option<&str>> = episodes
        .iter()
        .map(|e| e.thumbnail_url.as_ref().map(Url::as_str))
        .collect();
    let keys: Vec<Option<&str>> = urls
        .iter()
        .map(|url| url.and_then(|u| images.get(u).map(String::as_str)))
        .collect();
    let published: Vec<Option<NaiveDate>> = episodes.iter().map(|e| e.published_at).collect();
    sqlx::query_file!(
        "sql/upsert_episodes.sql",
        webtoon_id,
        &numbers,
        &titles as &[&str],
        &urls as &[Option<&str>],
        &keys as &[Option<&str>],
        &published as &[Option<NaiveDate>],
    )
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}
