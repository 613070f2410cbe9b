//! Postgres writes for webtoon requests. One transaction per request: claim the request id in
//! the ledger, apply the change set-based (authors, genres and episodes in one statement each,
//! never a round trip per row), record the completion.

use std::collections::HashMap;

use adapters::db::classify;
use chrono::{NaiveDate, Utc};
use domain::WorkerError;
use domain::webtoon::{Completion, ImageFailure, Outcome, RequestKind, WebtoonKey, WebtoonRequest};
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
    let row: Option<(sqlx::types::Json<Completion>, bool)> = sqlx::query_as(
        "SELECT completion, completion_sent_at IS NOT NULL
           FROM webtoon_requests WHERE request_id = $1 AND outcome <> 'pending'",
    )
    .bind(request_id)
    .fetch_optional(db)
    .await
    .map_err(classify)?;
    Ok(row.map(|(completion, completion_sent)| PriorRequest {
        completion: completion.0,
        completion_sent,
    }))
}

pub async fn mark_sent(db: &PgPool, request_id: &str) -> Result<(), WorkerError> {
    sqlx::query("UPDATE webtoon_requests SET completion_sent_at = now() WHERE request_id = $1")
        .bind(request_id)
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
    let rows: Vec<(String, String)> = sqlx::query_as(
        "WITH w AS (SELECT id, thumbnail_url, thumbnail_key, cover_url, cover_key
                      FROM webtoons WHERE platform = $1 AND external_id = $2)
         SELECT url, key FROM (
             SELECT thumbnail_url AS url, thumbnail_key AS key FROM w
             UNION ALL SELECT cover_url, cover_key FROM w
             UNION ALL SELECT e.thumbnail_url, e.thumbnail_key
                         FROM episodes e JOIN w ON e.webtoon_id = w.id
                        WHERE e.thumbnail_url = ANY($3)
         ) images
         WHERE key IS NOT NULL AND url = ANY($3)",
    )
    .bind(key.platform.as_str())
    .bind(&key.external_id)
    .bind(&urls)
    .fetch_all(db)
    .await
    .map_err(classify)?;
    Ok(rows.into_iter().collect())
}

/// Applies a request in one transaction.
pub async fn apply(
    db: &PgPool,
    request: &WebtoonRequest,
    images: &HashMap<String, String>,
    image_failures: Vec<ImageFailure>,
) -> Result<Applied, WorkerError> {
    let mut tx = db.begin().await.map_err(classify)?;

    // Claim the request id first: a concurrent delivery of the same request waits here until
    // this transaction ends, then finds the row taken.
    let claimed = sqlx::query(
        "INSERT INTO webtoon_requests (request_id, kind, outcome, completion)
         VALUES ($1, $2, 'pending', '{}') ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(&request.request_id)
    .bind(request.kind.as_str())
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
    sqlx::query(
        "UPDATE webtoon_requests SET webtoon_id = $2, outcome = $3, completion = $4
          WHERE request_id = $1",
    )
    .bind(&request.request_id)
    .bind(webtoon_id)
    .bind(outcome.as_str())
    .bind(sqlx::types::Json(&completion))
    .execute(&mut *tx)
    .await
    .map_err(classify)?;

    tx.commit().await.map_err(classify)?;
    Ok(Applied::Recorded(completion))
}

/// Shared SET list: every descriptive column keeps its stored value when the request leaves it
/// out. Image keys follow their URL: a new URL without a stored key clears the old key. A macro,
/// so both statements stay compile-time constants.
macro_rules! set_fields {
    () => {
        "
    title = COALESCE($3, webtoons.title),
    status = COALESCE($4, webtoons.status),
    rating = COALESCE($5, webtoons.rating),
    age_rating = COALESCE($6, webtoons.age_rating),
    publish_days = COALESCE($7, webtoons.publish_days),
    thumbnail_url = COALESCE($8, webtoons.thumbnail_url),
    thumbnail_key = CASE WHEN $8::text IS NULL THEN webtoons.thumbnail_key ELSE $9 END,
    cover_url = COALESCE($10, webtoons.cover_url),
    cover_key = CASE WHEN $10::text IS NULL THEN webtoons.cover_key ELSE $11 END,
    source_updated_at = $12,
    updated_at = now()"
    };
}

async fn upsert_webtoon(
    tx: &mut Transaction<'_, Postgres>,
    request: &WebtoonRequest,
    images: &HashMap<String, String>,
) -> Result<(Option<i64>, Outcome), WorkerError> {
    let f = &request.fields;
    let image = |url: &Option<Url>| url.as_ref().and_then(|u| images.get(u.as_str()).cloned());
    let sql = match request.kind {
        // `xmax = 0` is true only for a freshly inserted row, which tells created from updated.
        RequestKind::Create => concat!(
            "INSERT INTO webtoons AS webtoons (platform, external_id, title, status, rating,
                 age_rating, publish_days, thumbnail_url, thumbnail_key, cover_url, cover_key,
                 source_updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, '{}'), $8, $9, $10, $11, $12)
             ON CONFLICT (platform, external_id) DO UPDATE SET",
            set_fields!(),
            " WHERE webtoons.source_updated_at <= $12
             RETURNING id, xmax = 0"
        ),
        RequestKind::Update => concat!(
            "UPDATE webtoons SET",
            set_fields!(),
            " WHERE platform = $1 AND external_id = $2 AND source_updated_at <= $12
             RETURNING id, false"
        ),
    };
    let publish_days: Option<Vec<&str>> = f
        .publish_days
        .as_ref()
        .map(|days| days.iter().map(|d| d.as_str()).collect());
    let applied: Option<(i64, bool)> = sqlx::query_as(sql)
        .bind(request.key.platform.as_str())
        .bind(&request.key.external_id)
        .bind(f.title.as_deref())
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.rating)
        .bind(f.age_rating.map(|a| a.as_str()))
        .bind(publish_days)
        .bind(f.thumbnail_url.as_ref().map(Url::as_str))
        .bind(image(&f.thumbnail_url))
        .bind(f.cover_image_url.as_ref().map(Url::as_str))
        .bind(image(&f.cover_image_url))
        .bind(request.requested_at)
        .fetch_optional(&mut **tx)
        .await
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
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM webtoons WHERE platform = $1 AND external_id = $2")
            .bind(request.key.platform.as_str())
            .bind(&request.key.external_id)
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
    // Sorted inserts keep concurrent transactions from deadlocking on the unique index.
    sqlx::query(
        "INSERT INTO authors (name) SELECT DISTINCT n FROM unnest($1::text[]) AS n ORDER BY n
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&names)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    sqlx::query(
        "WITH wanted AS (
             SELECT a.id AS author_id, r.role
               FROM unnest($2::text[], $3::text[]) AS r(name, role)
               JOIN authors a ON a.name = r.name),
         removed AS (
             DELETE FROM webtoon_authors wa
              WHERE wa.webtoon_id = $1
                AND (wa.author_id, wa.role) NOT IN (SELECT author_id, role FROM wanted))
         INSERT INTO webtoon_authors (webtoon_id, author_id, role)
         SELECT $1, author_id, role FROM wanted
         ON CONFLICT DO NOTHING",
    )
    .bind(webtoon_id)
    .bind(&names)
    .bind(&roles)
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
    sqlx::query(
        "INSERT INTO genres (name) SELECT DISTINCT n FROM unnest($1::text[]) AS n ORDER BY n
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(genres)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    sqlx::query(
        "WITH wanted AS (SELECT g.id AS genre_id FROM genres g WHERE g.name = ANY($2)),
         removed AS (
             DELETE FROM webtoon_genres wg
              WHERE wg.webtoon_id = $1 AND wg.genre_id NOT IN (SELECT genre_id FROM wanted))
         INSERT INTO webtoon_genres (webtoon_id, genre_id)
         SELECT $1, genre_id FROM wanted
         ON CONFLICT DO NOTHING",
    )
    .bind(webtoon_id)
    .bind(genres)
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
    sqlx::query(
        "INSERT INTO episodes AS e (webtoon_id, number, title, thumbnail_url, thumbnail_key, published_at)
         SELECT $1, n, t, u, k, p
           FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::date[]) AS x(n, t, u, k, p)
         ON CONFLICT (webtoon_id, number) DO UPDATE SET
             title = EXCLUDED.title,
             thumbnail_url = COALESCE(EXCLUDED.thumbnail_url, e.thumbnail_url),
             thumbnail_key = CASE WHEN EXCLUDED.thumbnail_url IS NULL THEN e.thumbnail_key
                                  ELSE EXCLUDED.thumbnail_key END,
             published_at = COALESCE(EXCLUDED.published_at, e.published_at),
             updated_at = now()",
    )
    .bind(webtoon_id)
    .bind(&numbers)
    .bind(&titles)
    .bind(&urls)
    .bind(&keys)
    .bind(&published)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}
