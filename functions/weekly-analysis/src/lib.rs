//! weekly-analysis (SPEC §3, issue 19), Monday 03:00 Asia/Seoul: the Monday-to-Sunday week that
//! holds the target date (yesterday, the Sunday, when scheduled): popularity per genre, the
//! titles rising and falling week over week, and reader activity (active readers per day and
//! over the week, reads per reader). Stored in `weekly_analyses` for the API, one row per week,
//! replaced by a re-run.

use adapters::activity::{self, Periods};
use adapters::db;
use adapters::jobs::JobRun;
use chrono::NaiveDate;
use domain::WorkerError;
use domain::analysis::{TitleWeek, genre_popularity, reads_per_reader, trends, week_of};
use domain::calendar::{kst_day_start, sub_days};
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::instrument;

pub const JOB: &str = "weekly-analysis";

/// Its work is all in the database: the run reporter is all it needs.
pub use adapters::bootstrap::DatabaseJob as Deps;

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    JobRun::execute(JOB, payload, &deps.reporter, |run| run_job(run, deps)).await
}

async fn run_job(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let analysis = analyse(&deps.reporter.db, run.target_date, run.dry_run)
        .await
        .map_err(db::classify)?;
    let counts = [
        (
            "weekly_active_readers",
            analysis["weekly_active"].as_i64().unwrap_or(0),
        ),
        ("reads", analysis["reads"].as_i64().unwrap_or(0)),
        ("rising_titles", json_len(&analysis["rising"])),
        ("falling_titles", json_len(&analysis["falling"])),
        ("genres", json_len(&analysis["genres"])),
    ];
    let details = json!({
        "week_start": analysis["week_start"],
        "reads_per_reader": analysis["reads_per_reader"],
        "top_genres": analysis["genres"].as_array().map(|g| g.iter().take(5).cloned().collect::<Vec<_>>()),
        "rising": analysis["rising"].as_array().map(|g| g.iter().take(3).cloned().collect::<Vec<_>>()),
        "falling": analysis["falling"].as_array().map(|g| g.iter().take(3).cloned().collect::<Vec<_>>()),
    });
    run.report(&deps.reporter, &counts, details).await
}

fn json_len(value: &Value) -> i64 {
    value.as_array().map_or(0, |a| a.len() as i64)
}

/// Analyses the week of `day` and, unless `dry_run`, stores it. Returns the stored document.
#[instrument(skip(db))]
pub async fn analyse(db: &PgPool, day: NaiveDate, dry_run: bool) -> Result<Value, sqlx::Error> {
    let (start, end) = week_of(day);
    let periods = Periods {
        previous: kst_day_start(sub_days(start, 7)),
        start: kst_day_start(start),
        end: kst_day_start(end),
    };
    let titles: Vec<TitleWeek> = activity::title_reads(db, periods)
        .await?
        .into_iter()
        .map(|t| TitleWeek::new(t.webtoon_id, t.title, t.reads, t.previous_reads))
        .collect();
    let (rising, falling) = trends(&titles);
    let genres = genre_popularity(activity::genre_reads(db, periods).await?);
    let daily: Vec<Value> = activity::daily(db, periods.start, periods.end)
        .await?
        .into_iter()
        .map(|(day, readers, reads)| json!({"day": day, "readers": readers, "reads": reads}))
        .collect();
    let (weekly_active, reads) = activity::period(db, periods.start, periods.end).await?;
    let per_reader = reads_per_reader(reads, weekly_active);

    let (genres, rising, falling, daily) =
        (json!(genres), json!(rising), json!(falling), json!(daily));
    if !dry_run {
        sqlx::query_file!(
            "sql/store.sql",
            start,
            genres,
            rising,
            falling,
            daily,
            i32::try_from(weekly_active).unwrap_or(i32::MAX),
            reads,
            per_reader,
        )
        .execute(db)
        .await?;
    }
    Ok(json!({
        "week_start": start,
        "genres": genres,
        "rising": rising,
        "falling": falling,
        "daily": daily,
        "weekly_active": weekly_active,
        "reads": reads,
        "reads_per_reader": per_reader,
    }))
}
