//! monthly-report (SPEC §3, issue 19), the 1st at 04:00 Asia/Seoul: the month of the target
//! date (yesterday, the month's last day, when scheduled) as a report an editor opens: daily
//! active readers, reads by genre, the top titles, the catalog's growth and the recommendation
//! arms' offline quality. One self-contained HTML page (SVG charts drawn here, no external
//! assets) and a CSV per table go to the report bucket under `reports/monthly/YYYY-MM/`; the
//! operators get the page's link (presigned for 7 days) in the run's summary. A re-run
//! overwrites the month's objects with the same bytes when the data has not changed.

use std::collections::BTreeMap;
use std::time::Duration;

use adapters::activity::{self, Periods};
use adapters::bootstrap::ScheduledJob;
use adapters::jobs::{JobRun, Reporter};
use adapters::{aws, config, db};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use chrono::NaiveDate;
use domain::WorkerError;
use domain::analysis::{TitleWeek, genre_popularity, reads_per_reader};
use domain::calendar::{add_days, add_months, kst_day_start, month_of, sub_months};
use domain::report::{BarChart, Chart, LineChart, Report, Section, Series, Table};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::instrument;

pub const JOB: &str = "monthly-report";
/// Titles in the top list.
const TOP_TITLES: usize = 20;
/// How long the link sent to the operators works (the longest a SigV4 presigned URL may).
const LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Deserialize)]
struct Settings {
    report_bucket: String,
}

pub struct Deps {
    pub reporter: Reporter,
    pub s3: aws_sdk_s3::Client,
    /// `REPORT_BUCKET`
    pub report_bucket: String,
}

impl Deps {
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let base = ScheduledJob::from_env().await?;
        Ok(Self {
            s3: aws::s3(&base.sdk),
            reporter: base.reporter,
            report_bucket: settings.report_bucket,
        })
    }
}

pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, WorkerError> {
    JobRun::execute(JOB, payload, &deps.reporter, |run| run_job(run, deps)).await
}

/// The report's files: name, content type and bytes.
pub struct Rendered {
    pub month: NaiveDate,
    pub files: Vec<(String, &'static str, String)>,
    pub counts: Vec<(&'static str, i64)>,
}

async fn run_job(run: JobRun, deps: &Deps) -> Result<Value, WorkerError> {
    let rendered = render(&deps.reporter.db, run.target_date)
        .await
        .map_err(db::classify)?;
    let prefix = format!("reports/monthly/{}", rendered.month.format("%Y-%m"));
    let mut keys = Vec::new();
    if !run.dry_run {
        for (name, content_type, body) in &rendered.files {
            let key = format!("{prefix}/{name}");
            deps.s3
                .put_object()
                .bucket(&deps.report_bucket)
                .key(&key)
                .content_type(*content_type)
                .body(ByteStream::from(body.clone().into_bytes()))
                .send()
                .await
                .map_err(|err| {
                    WorkerError::retryable(anyhow::Error::new(err).context(format!("put {key}")))
                })?;
            keys.push(key);
        }
    }
    let page = format!("{prefix}/report.html");
    let link = if run.dry_run {
        None
    } else {
        Some(presigned(deps, &page).await?)
    };
    let details = json!({
        "month": rendered.month.format("%Y-%m").to_string(),
        "report": format!("s3://{}/{page}", deps.report_bucket),
        "link": link,
        "objects": keys,
    });
    run.report(&deps.reporter, &rendered.counts, details).await
}

/// A GET link an editor can open without AWS credentials, valid for [`LINK_TTL`].
async fn presigned(deps: &Deps, key: &str) -> Result<String, WorkerError> {
    let config = PresigningConfig::expires_in(LINK_TTL)
        .map_err(|err| WorkerError::retryable(anyhow::Error::new(err)))?;
    let request = deps
        .s3
        .get_object()
        .bucket(&deps.report_bucket)
        .key(key)
        .presigned(config)
        .await
        .map_err(|err| {
            WorkerError::retryable(anyhow::Error::new(err).context("presign the report"))
        })?;
    Ok(request.uri().to_owned())
}

/// Reads the month of `day` and renders the report's page and tables. Public for tests.
#[instrument(skip(db))]
pub async fn render(db: &PgPool, day: NaiveDate) -> Result<Rendered, sqlx::Error> {
    let month = month_of(day);
    let next = add_months(month, 1);
    let periods = Periods {
        previous: kst_day_start(sub_months(month, 1)),
        start: kst_day_start(month),
        end: kst_day_start(next),
    };
    let label = month.format("%Y-%m").to_string();

    let active: BTreeMap<NaiveDate, (i64, i64)> = activity::daily(db, periods.start, periods.end)
        .await?
        .into_iter()
        .map(|(d, readers, reads)| (d, (readers, reads)))
        .collect();
    let days: Vec<NaiveDate> = (0..)
        .map(|n| add_days(month, n))
        .take_while(|d| *d < next)
        .collect();
    let daily = Table {
        name: "daily".into(),
        headers: vec!["day".into(), "active_readers".into(), "reads".into()],
        rows: days
            .iter()
            .map(|d| {
                let (readers, reads) = active.get(d).copied().unwrap_or((0, 0));
                vec![d.to_string(), readers.to_string(), reads.to_string()]
            })
            .collect(),
    };
    let (monthly_active, reads) = activity::period(db, periods.start, periods.end).await?;

    let genres = genre_popularity(activity::genre_reads(db, periods).await?);
    let genre_table = Table {
        name: "genres".into(),
        headers: [
            "genre",
            "reads",
            "readers",
            "share",
            "change_vs_previous_month",
        ]
        .map(String::from)
        .to_vec(),
        rows: genres
            .iter()
            .map(|g| {
                vec![
                    g.genre.clone(),
                    g.reads.to_string(),
                    g.readers.to_string(),
                    percent(Some(g.share)),
                    percent(g.change),
                ]
            })
            .collect(),
    };

    let mut titles: Vec<TitleWeek> = activity::title_reads(db, periods)
        .await?
        .into_iter()
        .filter(|t| t.reads > 0)
        .map(|t| TitleWeek::new(t.webtoon_id, t.title, t.reads, t.previous_reads))
        .collect();
    titles.sort_by(|a, b| b.reads.cmp(&a.reads).then(a.webtoon_id.cmp(&b.webtoon_id)));
    let titles_read = titles.len() as i64;
    titles.truncate(TOP_TITLES);
    let title_table = Table {
        name: "titles".into(),
        headers: [
            "rank",
            "webtoon_id",
            "title",
            "reads",
            "previous_month_reads",
            "change",
        ]
        .map(String::from)
        .to_vec(),
        rows: titles
            .iter()
            .enumerate()
            .map(|(i, t)| {
                vec![
                    (i + 1).to_string(),
                    t.webtoon_id.to_string(),
                    t.title.clone(),
                    t.reads.to_string(),
                    t.previous_reads.to_string(),
                    percent(t.change),
                ]
            })
            .collect(),
    };

    let changes = sqlx::query_file!("sql/catalog_changes.sql", periods.start, periods.end)
        .fetch_one(db)
        .await?;
    let quality = sqlx::query_file!("sql/recommendation_quality.sql", month, next)
        .fetch_all(db)
        .await?;
    let quality_table = Table {
        name: "recommendations".into(),
        headers: [
            "day",
            "variant",
            "readers",
            "precision_at_10",
            "recall_at_10",
        ]
        .map(String::from)
        .to_vec(),
        rows: quality
            .iter()
            .map(|q| {
                vec![
                    q.day.to_string(),
                    q.variant.clone(),
                    q.readers.to_string(),
                    format!("{:.4}", q.precision),
                    format!("{:.4}", q.recall),
                ]
            })
            .collect(),
    };
    let mut arms: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for q in &quality {
        arms.entry(q.variant.clone()).or_default();
    }
    for values in arms.values_mut() {
        values.resize(days.len(), 0.0);
    }
    for q in &quality {
        let index = (q.day - month).num_days();
        if let (Some(values), Ok(index)) = (arms.get_mut(&q.variant), usize::try_from(index))
            && let Some(slot) = values.get_mut(index)
        {
            *slot = q.precision;
        }
    }

    let day_labels: Vec<String> = days.iter().map(|d| d.format("%m-%d").to_string()).collect();
    let report = Report {
        title: format!("TOONPICK monthly report — {label}"),
        subtitle: format!(
            "{} to {} (Asia/Seoul); generated from reader activity, the catalog and the recommendation runs",
            month,
            next.pred_opt().unwrap_or(month)
        ),
        highlights: vec![
            ("Monthly active readers".into(), count(monthly_active)),
            ("Episode reads".into(), count(reads)),
            ("Reads per reader".into(), format!("{:.1}", reads_per_reader(reads, monthly_active))),
            ("Titles read".into(), count(titles_read)),
            ("New titles".into(), count(changes.new_titles)),
            ("Updated titles".into(), count(changes.updated_titles)),
        ],
        sections: vec![
            Section {
                heading: "Daily active readers".into(),
                note: Some("Readers with any activity on the day.".into()),
                chart: Some(Chart::Line(LineChart {
                    title: "Active readers per day".into(),
                    unit: "readers".into(),
                    x_labels: day_labels.clone(),
                    series: vec![Series {
                        name: "active readers".into(),
                        values: daily.rows.iter().map(|r| cell(r, 1)).collect(),
                    }],
                })),
                table: Some(daily.clone()),
            },
            Section {
                heading: "Reads by genre".into(),
                note: Some("A title in two genres counts in both; change is against the previous month.".into()),
                chart: Some(Chart::Bar(BarChart {
                    title: "Episode reads by genre".into(),
                    unit: "reads".into(),
                    bars: genres.iter().map(|g| (g.genre.clone(), g.reads as f64)).collect(),
                })),
                table: Some(genre_table.clone()),
            },
            Section {
                heading: format!("Top {TOP_TITLES} titles"),
                note: None,
                chart: Some(Chart::Bar(BarChart {
                    title: "Episode reads by title".into(),
                    unit: "reads".into(),
                    bars: titles.iter().map(|t| (t.title.clone(), t.reads as f64)).collect(),
                })),
                table: Some(title_table.clone()),
            },
            Section {
                heading: "Recommendation quality".into(),
                note: Some(
                    "Offline precision@10 per arm on each day's held-out reads; \"popularity\" is the baseline every arm should beat."
                        .into(),
                ),
                chart: Some(Chart::Line(LineChart {
                    title: "precision@10 per arm".into(),
                    unit: "precision".into(),
                    x_labels: day_labels,
                    series: arms
                        .into_iter()
                        .map(|(name, values)| Series { name, values })
                        .collect(),
                })),
                table: Some(quality_table.clone()),
            },
        ],
    };
    let files = vec![
        (
            "report.html".to_owned(),
            "text/html; charset=utf-8",
            report.to_html(),
        ),
        (
            "daily.csv".to_owned(),
            "text/csv; charset=utf-8",
            daily.to_csv(),
        ),
        (
            "genres.csv".to_owned(),
            "text/csv; charset=utf-8",
            genre_table.to_csv(),
        ),
        (
            "titles.csv".to_owned(),
            "text/csv; charset=utf-8",
            title_table.to_csv(),
        ),
        (
            "recommendations.csv".to_owned(),
            "text/csv; charset=utf-8",
            quality_table.to_csv(),
        ),
    ];
    let counts = vec![
        ("monthly_active_readers", monthly_active),
        ("reads", reads),
        ("titles_read", titles_read),
        ("new_titles", changes.new_titles),
        ("report_days", days.len() as i64),
    ];
    Ok(Rendered {
        month,
        files,
        counts,
    })
}

fn cell(row: &[String], index: usize) -> f64 {
    row.get(index).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "new".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn count(n: i64) -> String {
    domain::report::number(n as f64)
}
