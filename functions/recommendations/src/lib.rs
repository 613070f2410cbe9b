//! recommendations (SPEC §3, issue 19), 02:30 Asia/Seoul: the top 20 webtoons each active
//! reader has not opened, from the readers' activity the app writes to `user_webtoon_events`
//! (rules in `domain::recommend`).
//!
//! One pass over the history window gives each reader's engagement per title, before the
//! target day and on it. The signals are first learned from the days before, and every arm
//! (and a popularity-only baseline) is scored on what a sample of readers went on to read on
//! the target day: precision@10 and recall@10 per arm, in the summary and as EMF metrics. Then
//! they are learned again from everything, and every active reader gets their list under their
//! arm.
//!
//! The lists are written as a new set (its own partition) that becomes visible only when
//! complete; readers keep being served the previous set until then, and a re-run writes a new
//! set with the same contents.

use std::collections::HashMap;

use adapters::db;
use adapters::emf::{Metrics, Unit};
use adapters::jobs::JobRun;
use chrono::{DateTime, NaiveDate, Utc};
use domain::WorkerError;
use domain::calendar::{add_days, kst_day_start, sub_days};
use domain::recommend::{
    ACTIVE_DAYS, Catalog, Evaluation, HALF_LIFE_DAYS, HISTORY_DAYS, History, KIND_WEIGHTS, Pick,
    Reason, TOP_N, eval_sample, evaluate, recommend, train, variant_of,
};
use futures::StreamExt as _;
use futures::TryStreamExt as _;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{info, instrument};

pub const JOB: &str = "recommendations";
/// Readers per INSERT (20 rows each).
const READERS_PER_CHUNK: usize = 5_000;
/// INSERTs in flight.
const WRITE_CONCURRENCY: usize = 2;

/// Its work is all in the database: the run reporter is all it needs.
pub use adapters::bootstrap::DatabaseJob as Deps;

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    JobRun::execute(JOB, payload, &deps.reporter, |run| run_job(run, deps)).await
}

/// What one generation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub set_id: Option<i64>,
    pub titles: usize,
    pub history_pairs: usize,
    pub readers: usize,
    pub cold_start: usize,
    pub rows: usize,
    pub sets_dropped: i32,
    pub evaluation: Vec<Evaluation>,
}

async fn run_job(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let generated = generate(&deps.reporter.db, run.target_date, run.dry_run).await?;
    for eval in &generated.evaluation {
        let mut metrics = Metrics::for_function(adapters::telemetry::function_name())
            .dimension("Job", JOB)
            .dimension("Variant", eval.variant);
        metrics.put("PrecisionAt10", eval.precision_at_10, Unit::None);
        metrics.put("RecallAt10", eval.recall_at_10, Unit::None);
        metrics.emit();
    }
    let counts = [
        ("titles", generated.titles as i64),
        ("readers", generated.readers as i64),
        ("cold_start_readers", generated.cold_start as i64),
        ("recommendations", generated.rows as i64),
        ("sets_dropped", i64::from(generated.sets_dropped)),
    ];
    let details = json!({
        "set_id": generated.set_id,
        "history_pairs": generated.history_pairs,
        "evaluation": generated.evaluation,
    });
    run.report(&deps.reporter, &counts, details).await
}

/// Engagement rows of the window, split into the two histories and the held-out reads.
struct Activity {
    before: Vec<(i64, u32, f32)>,
    all: Vec<(i64, u32, f32)>,
    read_on_day: Vec<(i64, u32)>,
    last_at: HashMap<i64, DateTime<Utc>>,
    /// (reader, title) opened before the window: excluded, not learned from.
    earlier: Vec<(i64, u32)>,
}

/// Generates (and unless `dry_run`, writes) the set for `day`. Public for the benchmark.
#[instrument(skip(db))]
pub async fn generate(
    db: &PgPool,
    day: NaiveDate,
    dry_run: bool,
) -> Result<Generated, WorkerError> {
    let catalog = load_catalog(db).await.map_err(db::classify)?;
    let activity = load_activity(db, &catalog, day)
        .await
        .map_err(db::classify)?;

    let before = History::from_pairs(activity.before);
    let held_out = eval_sample(
        activity
            .read_on_day
            .into_iter()
            .filter_map(|(reader, title)| {
                let position = before.position(reader)?;
                let (opened, _) = before.of(position);
                (!opened.contains(&title)).then_some((reader, position, title))
            })
            .fold(
                HashMap::<i64, (usize, Vec<u32>)>::new(),
                |mut by_reader, (reader, position, title)| {
                    by_reader
                        .entry(reader)
                        .or_insert((position, Vec::new()))
                        .1
                        .push(title);
                    by_reader
                },
            )
            .into_iter()
            .map(|(reader, (position, mut titles))| {
                titles.sort_unstable();
                (reader, position, titles)
            })
            .collect(),
    );
    let evaluation = evaluate(&catalog, &before, &held_out);
    drop(before);

    let all = History::from_pairs(activity.all).with_earlier(activity.earlier);
    let model = train(&catalog, &all);
    let active_since = kst_day_start(sub_days(day, (ACTIVE_DAYS - 1) as u64));
    let active: Vec<usize> = (0..all.readers.len())
        .filter(|&r| {
            activity
                .last_at
                .get(&all.readers[r])
                .is_some_and(|&at| at >= active_since)
        })
        .collect();
    let cold_start = active
        .iter()
        .filter(|&&r| all.of(r).0.len() < domain::recommend::MIN_HISTORY)
        .count();
    let lists = recommend(&catalog, &model, &all, &active, None, TOP_N);
    let rows = lists.iter().map(Vec::len).sum();
    info!(
        readers = active.len(),
        rows,
        titles_with_neighbours = model.titles_with_neighbours(),
        "recommendations generated"
    );

    let mut generated = Generated {
        set_id: None,
        titles: catalog.len(),
        history_pairs: all.pairs(),
        readers: active.len(),
        cold_start,
        rows,
        sets_dropped: 0,
        evaluation,
    };
    if dry_run {
        return Ok(generated);
    }
    let readers: Vec<i64> = active.iter().map(|&r| all.readers[r]).collect();
    let (set_id, dropped) =
        write_set(db, day, &catalog, &readers, &lists, &generated.evaluation).await?;
    generated.set_id = Some(set_id);
    generated.sets_dropped = dropped;
    Ok(generated)
}

async fn load_catalog(db: &PgPool) -> Result<Catalog, sqlx::Error> {
    let mut rows = sqlx::query_file!("sql/catalog.sql").fetch_all(db).await?;
    rows.sort_by_key(|row| row.id);
    let mut catalog = Catalog::default();
    for row in rows {
        catalog.add(row.id, &row.genres, &row.authors);
    }
    Ok(catalog)
}

/// Streams the window's engagement rows (one per reader and title) into memory as compact
/// tuples; titles no longer in the catalog are skipped.
async fn load_activity(
    db: &PgPool,
    catalog: &Catalog,
    day: NaiveDate,
) -> Result<Activity, sqlx::Error> {
    let kinds: Vec<String> = KIND_WEIGHTS.iter().map(|(k, _)| (*k).to_owned()).collect();
    let weights: Vec<f64> = KIND_WEIGHTS.iter().map(|(_, w)| *w).collect();
    let day_start = kst_day_start(day);
    let window_start = kst_day_start(sub_days(day, (HISTORY_DAYS - 1) as u64));
    let window_end = kst_day_start(add_days(day, 1));
    let mut activity = Activity {
        before: Vec::new(),
        all: Vec::new(),
        read_on_day: Vec::new(),
        last_at: HashMap::new(),
        earlier: Vec::new(),
    };
    let mut earlier = sqlx::query_file!("sql/opened_earlier.sql", window_start).fetch(db);
    while let Some(row) = earlier.try_next().await? {
        if let Some(title) = catalog.title(row.webtoon_id) {
            activity.earlier.push((row.user_id, title));
        }
    }
    drop(earlier);
    let mut rows = sqlx::query_file!(
        "sql/engagement.sql",
        day,
        HALF_LIFE_DAYS,
        day_start,
        &kinds,
        &weights,
        window_start,
        window_end,
    )
    .fetch(db);
    while let Some(row) = rows.try_next().await? {
        let Some(title) = catalog.title(row.webtoon_id) else {
            continue;
        };
        if row.before > 0.0 {
            activity
                .before
                .push((row.user_id, title, row.before as f32));
        }
        activity
            .all
            .push((row.user_id, title, (row.before + row.on_day) as f32));
        if row.read_on_day {
            activity.read_on_day.push((row.user_id, title));
        }
        let last = activity.last_at.entry(row.user_id).or_insert(row.last_at);
        if row.last_at > *last {
            *last = row.last_at;
        }
    }
    Ok(activity)
}

/// One chunk of rows, as the INSERT's columns.
#[derive(Default)]
struct Chunk {
    user_ids: Vec<i64>,
    ranks: Vec<i16>,
    webtoon_ids: Vec<i64>,
    scores: Vec<f32>,
    variants: Vec<String>,
    reasons: Vec<String>,
    because_ids: Vec<i64>,
    becauses: Vec<String>,
}

impl Chunk {
    fn push(&mut self, catalog: &Catalog, reader: i64, rank: usize, pick: &Pick) {
        let (because_id, because) = match pick.reason {
            Reason::Similar(title) => (catalog.ids[title as usize], String::new()),
            Reason::Genre(g) => (0, catalog.genre_names[g as usize].clone()),
            Reason::Author(a) => (0, catalog.author_names[a as usize].clone()),
            Reason::Popular => (0, String::new()),
        };
        self.user_ids.push(reader);
        self.ranks.push(rank as i16);
        self.webtoon_ids.push(catalog.ids[pick.title as usize]);
        self.scores.push(pick.score);
        self.variants.push(variant_of(reader).name.to_owned());
        self.reasons.push(pick.reason.as_str().to_owned());
        self.because_ids.push(because_id);
        self.becauses.push(because);
    }
}

/// Writes the set in chunks, then completes it (which drops the sets it supersedes).
async fn write_set(
    db: &PgPool,
    day: NaiveDate,
    catalog: &Catalog,
    readers: &[i64],
    lists: &[Vec<Pick>],
    evaluation: &[Evaluation],
) -> Result<(i64, i32), WorkerError> {
    let set_id = sqlx::query_file_scalar!("sql/begin_set.sql", day)
        .fetch_one(db)
        .await
        .map_err(db::classify)?;
    // Each chunk's columns are built when its INSERT starts, so at most WRITE_CONCURRENCY
    // chunks (not the whole set's two million rows) are in memory at once.
    let inserts = readers
        .chunks(READERS_PER_CHUNK)
        .zip(lists.chunks(READERS_PER_CHUNK))
        .map(|(readers, lists)| async move {
            let mut c = Chunk::default();
            for (&reader, list) in readers.iter().zip(lists) {
                for (rank, pick) in list.iter().enumerate() {
                    c.push(catalog, reader, rank + 1, pick);
                }
            }
            sqlx::query_file!(
                "sql/insert.sql",
                set_id,
                &c.user_ids,
                &c.ranks,
                &c.webtoon_ids,
                &c.scores,
                &c.variants,
                &c.reasons,
                &c.because_ids,
                &c.becauses,
            )
            .execute(db)
            .await
        });
    futures::stream::iter(inserts)
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .map_err(db::classify)?;
    let readers = i32::try_from(readers.len()).unwrap_or(i32::MAX);
    let dropped =
        sqlx::query_file_scalar!("sql/complete_set.sql", set_id, readers, json!(evaluation))
            .fetch_one(db)
            .await
            .map_err(db::classify)?;
    Ok((set_id, dropped))
}
