//! Local tooling:
//!
//! - `devtools migrate`: applies infra/migrations to $DATABASE_URL (used by `make up` and by
//!   deploy pipelines before a new version of the functions goes live).
//! - `devtools kafka-sources [--idle SECS] [--only FUNCTION]`: the local MSK event sources of
//!   every function in template.yaml, invoking `cargo lambda watch` at $LAMBDA_INVOKE_URL
//!   (default http://127.0.0.1:9000). With `--idle` it stops once no record came for that
//!   long; without, it runs until stopped.
//! - `devtools produce-samples`: produces the records of the Kafka sample events in events/ to
//!   their topics on $KAFKA_BROKERS, stamped now.
//! - `devtools redrive DLQ [--group GROUP]`: replays a dead-letter topic's records to the
//!   topic they came from (see `devtools::redrive`); the group defaults to `DLQ-redrive`.
//!   `KAFKA_AUTH=iam` authenticates to MSK with the caller's AWS credentials.
//! - `devtools coupon-outcome REQUEST_ID`: the recorded outcome of a coupon issue request in
//!   $DATABASE_URL, as JSON (exit status 1 when the request has not been decided).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use devtools::kafka_source::{self, Endpoints};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::PgPoolOptions;

const USAGE: &str = "usage: devtools migrate | kafka-sources [--idle SECS] [--only FUNCTION] \
                     | produce-samples | redrive DLQ [--group GROUP] | coupon-outcome REQUEST_ID";
/// The Kafka sample events `produce-samples` sends.
const KAFKA_SAMPLES: [&str; 4] = [
    "performance-metrics.json",
    "quality-score.json",
    "budget-sync.json",
    "coupon-issue.json",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("migrate") => migrate().await,
        Some("kafka-sources") => kafka_sources(&args[1..]).await,
        Some("produce-samples") => produce_samples().await,
        Some("redrive") => redrive(&args[1..]).await,
        Some("coupon-outcome") => coupon_outcome(&args[1..]).await,
        _ => bail!(USAGE),
    }
}

async fn database() -> anyhow::Result<sqlx::PgPool> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .context("connect to DATABASE_URL")
}

async fn migrate() -> anyhow::Result<()> {
    let pool = database().await?;
    let migrator = adapters::db::migrator(&repo_root().join("infra/migrations")).await?;
    migrator.run(&pool).await.context("apply migrations")?;
    println!("  migrations applied ({} known)", migrator.iter().count());
    Ok(())
}

async fn kafka_sources(args: &[String]) -> anyhow::Result<()> {
    let mut idle = None;
    let mut only = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--idle", Some(secs)) => {
                idle = Some(Duration::from_secs_f64(
                    secs.parse().context("--idle takes seconds")?,
                ));
            }
            ("--only", Some(function)) => only = Some(function.clone()),
            _ => bail!(USAGE),
        }
    }
    let endpoints = Endpoints {
        brokers: brokers(),
        invoke_base: std::env::var("LAMBDA_INVOKE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:9000".to_owned()),
    };
    let sources: Vec<_> =
        kafka_source::sources_from_template(&repo_root().join(".stack/template.local.json"))?
            .into_iter()
            .filter(|s| only.as_ref().is_none_or(|f| *f == s.function))
            .collect();
    if sources.is_empty() {
        bail!("no MSK event source in template.yaml matches");
    }
    let runs = sources
        .iter()
        .map(|source| kafka_source::run(source, &endpoints, idle));
    for (source, stats) in sources
        .iter()
        .zip(futures::future::try_join_all(runs).await?)
    {
        println!(
            "  {:<20} {} records in {} batches, {} failed invocations retried",
            source.function, stats.records, stats.batches, stats.failed_invocations
        );
    }
    Ok(())
}

async fn produce_samples() -> anyhow::Result<()> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("acks", "all")
        .create()?;
    for file in KAFKA_SAMPLES {
        let path = repo_root().join("events").join(file);
        let event: aws_lambda_events::event::kafka::KafkaEvent =
            serde_json::from_str(&std::fs::read_to_string(&path)?)
                .with_context(|| format!("parse {}", path.display()))?;
        let mut records: Vec<_> = event.records.values().flatten().collect();
        records.sort_by_key(|r| (r.partition, r.offset));
        for record in &records {
            let topic = record.topic.as_deref().context("record without topic")?;
            let value = BASE64.decode(record.value.as_deref().unwrap_or_default())?;
            let key = record
                .key
                .as_deref()
                .map(|k| BASE64.decode(k))
                .transpose()?;
            let mut message = FutureRecord::to(topic).payload(&value);
            if let Some(key) = &key {
                message = message.key(key);
            }
            producer
                .send(message, Duration::from_secs(10))
                .await
                .map_err(|(err, _)| anyhow::anyhow!("produce to {topic}: {err}"))?;
        }
        println!("  {file}: {} records produced", records.len());
    }
    Ok(())
}

async fn redrive(args: &[String]) -> anyhow::Result<()> {
    let (dlq, group) = match args {
        [dlq] => (dlq.clone(), format!("{dlq}-redrive")),
        [dlq, flag, group] if flag == "--group" => (dlq.clone(), group.clone()),
        _ => bail!(USAGE),
    };
    // KAFKA_AUTH=iam reaches MSK with the caller's AWS credentials; locally, plaintext.
    let kafka = match std::env::var_os("KAFKA_BROKERS") {
        Some(_) => adapters::config::KafkaConfig::from_env()?,
        None => adapters::config::KafkaConfig {
            brokers: brokers(),
            auth: adapters::config::KafkaAuth::Plaintext,
        },
    };
    let sdk = adapters::aws::sdk_config().await;
    let redriven = devtools::redrive::redrive(&kafka, &sdk, &dlq, &group).await?;
    if redriven.per_topic.is_empty() {
        println!("  {dlq}: nothing to redrive");
    }
    for (topic, records) in &redriven.per_topic {
        println!("  {dlq} -> {topic}: {records} records");
    }
    Ok(())
}

async fn coupon_outcome(args: &[String]) -> anyhow::Result<()> {
    let [request_id] = args else {
        bail!(USAGE);
    };
    match adapters::coupons::lookup(&database().await?, request_id).await? {
        Some(answer) => {
            println!("{}", serde_json::to_string(&answer)?);
            Ok(())
        }
        None => {
            eprintln!(
                "request {request_id:?} has no outcome (not yet processed, or dead-lettered)"
            );
            std::process::exit(1);
        }
    }
}
