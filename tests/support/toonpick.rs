//! TOONPICK's populations: titles with genres and authors, and readers whose tastes are known,
//! written set-based so the benchmark's millions of events take seconds, not minutes.

use chrono::NaiveDate;
use domain::calendar::kst_day_start;
use sqlx::PgPool;

/// The shape of a seeded population.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    pub titles: i64,
    pub readers: i64,
    /// Events per reader before the target day.
    pub events_per_reader: i64,
    /// Tastes: title `i` (0-based, by id) belongs to cluster `i % clusters`; reader `u` to
    /// `least(u % (clusters + 1), clusters - 1)`, so the last cluster has twice the readers and
    /// its titles are the most popular.
    pub clusters: i64,
    /// Days before the target day the events spread over.
    pub days: i64,
}

/// `titles` webtoons, each in its cluster's genre (`GENRE-<cluster>`) and by one of its
/// cluster's ten authors. Returns their ids in order.
pub async fn seed_titles(db: &PgPool, titles: i64, clusters: i64) -> anyhow::Result<Vec<i64>> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webtoons (platform, external_id, title, status, source_updated_at)
           SELECT 'NAVER', 'seed-' || i, '작품 ' || i, 'ONGOING', now() FROM generate_series(0, {last}) i;
         INSERT INTO genres (name) SELECT 'GENRE-' || c FROM generate_series(0, {clusters} - 1) c
           ON CONFLICT (name) DO NOTHING;
         INSERT INTO authors (name) SELECT 'author-' || c || '-' || a
           FROM generate_series(0, {clusters} - 1) c, generate_series(0, 9) a ON CONFLICT (name) DO NOTHING;
         WITH t AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM webtoons WHERE external_id LIKE 'seed-%')
         INSERT INTO webtoon_genres (webtoon_id, genre_id)
           SELECT t.id, g.id FROM t JOIN genres g ON g.name = 'GENRE-' || (t.i % {clusters});
         WITH t AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM webtoons WHERE external_id LIKE 'seed-%')
         INSERT INTO webtoon_authors (webtoon_id, author_id, role)
           SELECT t.id, a.id, 'WRITER' FROM t
             JOIN authors a ON a.name = 'author-' || (t.i % {clusters}) || '-' || ((t.i / {clusters}) % 10);",
        last = titles - 1,
    )))
    .execute(db)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT id FROM webtoons WHERE external_id LIKE 'seed-%' ORDER BY id")
            .fetch_all(db)
            .await?,
    )
}

/// Events before `day`: each reader opens titles of their cluster, the lower-numbered ones
/// more often (a skewed chart); every fifth event is a like, the rest episode reads. On `day`
/// itself, each reader reads one title of their cluster (the held-out day).
pub async fn seed_events(db: &PgPool, day: NaiveDate, p: Population) -> anyhow::Result<()> {
    let start = kst_day_start(day);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET statement_timeout = 0;
         CREATE TEMP TABLE seed_ids AS
           SELECT (row_number() OVER (ORDER BY id) - 1)::int AS i, id
             FROM webtoons WHERE external_id LIKE 'seed-%';
         ALTER TABLE seed_ids ADD PRIMARY KEY (i);
         ANALYZE seed_ids;
         INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, episode_number, occurred_at)
           SELECT gen_random_uuid(), e.u, s.id,
                  CASE WHEN e.k % 5 = 0 THEN 'like' ELSE 'episode_read' END,
                  CASE WHEN e.k % 5 = 0 THEN NULL ELSE 1 + e.k % 30 END,
                  '{start}'::timestamptz - (1 + (e.u * 13 + e.k * 7) % {days}) * INTERVAL '1 day'
                    + ((e.u + e.k) % 86000) * INTERVAL '1 second'
             FROM (SELECT u, k, least(u % ({c} + 1), {c} - 1)
                               + {c} * floor(({per_cluster})::float8
                                             * power(((u * 7919 + k * 104729) % 10007) / 10007.0, 2))::int AS i
                     FROM generate_series(1, {readers}) u, generate_series(1, {per_reader}) k) e
             JOIN seed_ids s USING (i);
         INSERT INTO user_webtoon_events (event_id, user_id, webtoon_id, kind, episode_number, occurred_at)
           SELECT gen_random_uuid(), e.u, s.id, 'episode_read', 1,
                  '{start}'::timestamptz + (e.u % 80000) * INTERVAL '1 second'
             FROM (SELECT u, least(u % ({c} + 1), {c} - 1) + {c} * ((u * 31) % {per_cluster}) AS i
                     FROM generate_series(1, {readers}) u) e
             JOIN seed_ids s USING (i);
         DROP TABLE seed_ids;
         ANALYZE user_webtoon_events;",
        c = p.clusters,
        per_cluster = p.titles / p.clusters,
        days = p.days,
        readers = p.readers,
        per_reader = p.events_per_reader,
    )))
    .execute(db)
    .await?;
    Ok(())
}
