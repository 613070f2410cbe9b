//! Local tooling; `devtools --help` lists the commands and their options.
//!
//! - `migrate`: applies infra/migrations to $DATABASE_URL (used by `make up` and by deploy
//!   pipelines before a new version of the functions goes live).
//! - `produce-samples`: produces the records of the Kafka sample events in events/ to their
//!   topics on $KAFKA_BROKERS, stamped now.
//! - `redrive`: replays a dead-letter topic's records to the topic they came from (see
//!   `devtools::redrive`). `KAFKA_AUTH=iam` authenticates to MSK with the caller's AWS
//!   credentials.
//! - `coupon-outcome`: the recorded outcome of a coupon issue request in $DATABASE_URL, as JSON
//!   (exit status 1 when the request has not been decided).
//! - `cdp-rows`: the first rows of a CDP Parquet file in S3, as a query engine would read them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Parser, Subcommand};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::PgPoolOptions;

/// The Kafka sample events `produce-samples` sends.
const KAFKA_SAMPLES: [&str; 4] = [
    "performance-metrics.json",
    "quality-score.json",
    "budget-sync.json",
    "coupon-issue.json",
];

/// Local tooling for the adworkers stack.
#[derive(Parser)]
#[command(name = "devtools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply infra/migrations to $DATABASE_URL.
    Migrate {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Produce the records of the Kafka sample events in events/, stamped now.
    ProduceSamples {
        #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
    },
    /// Replay a dead-letter topic's records to the topics they came from.
    Redrive {
        /// The dead-letter topic.
        dlq: String,
        /// The consumer group that remembers what was redriven (default: DLQ-redrive).
        #[arg(long)]
        group: Option<String>,
        /// Where the admin API's redrive requests are marked done (skipped without).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Print a token of the local issuer (.stack/jwt) for SUBJECT, as the console's identity
    /// provider would hand out.
    Token {
        subject: String,
        #[arg(long, default_value = devtools::token::LOCAL_AUDIENCE)]
        audience: String,
        /// The scopes it grants, space-separated (the admin API reads ops:read and ops:admin).
        #[arg(long, default_value = "alerts:write")]
        scope: String,
        /// Seconds until it expires (negative: expired already).
        #[arg(long, default_value_t = 3600, allow_hyphen_values = true)]
        expires_in: i64,
        /// The issuer's key, as `make up` writes it (relative to the current directory: one
        /// binary may serve several checkouts that share a target directory).
        #[arg(long, default_value = ".stack/jwt")]
        jwt_dir: PathBuf,
    },
    /// Print the recorded outcome of a coupon issue request as JSON.
    CouponOutcome {
        request_id: String,
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Print the schema, the row count and the first rows of a CDP Parquet file in S3.
    CdpRows {
        bucket: String,
        key: String,
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Migrate { database_url } => migrate(&database_url).await,
        Command::ProduceSamples { brokers } => produce_samples(&brokers).await,
        Command::Redrive {
            dlq,
            group,
            database_url,
        } => {
            let group = group.unwrap_or_else(|| format!("{dlq}-redrive"));
            redrive(&dlq, &group, database_url.as_deref()).await
        }
        Command::Token {
            subject,
            audience,
            scope,
            expires_in,
            jwt_dir,
        } => {
            println!(
                "{}",
                devtools::token::local_token(&jwt_dir, &subject, &audience, &scope, expires_in)?
            );
            Ok(())
        }
        Command::CouponOutcome {
            request_id,
            database_url,
        } => coupon_outcome(&request_id, &database_url).await,
        Command::CdpRows { bucket, key, limit } => cdp_rows(&bucket, &key, limit).await,
    }
}

async fn cdp_rows(bucket: &str, key: &str, limit: usize) -> anyhow::Result<()> {
    use parquet::file::reader::{FileReader as _, SerializedFileReader};
    let s3 = adapters::aws::s3(&adapters::aws::sdk_config().await);
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("get s3://{bucket}/{key}"))?;
    let bytes = object.body.collect().await?.into_bytes();
    let reader = SerializedFileReader::new(bytes)?;
    let metadata = reader.metadata().file_metadata();
    let columns: Vec<String> = metadata
        .schema_descr()
        .columns()
        .iter()
        .map(|c| format!("{} {}", c.name(), c.physical_type()))
        .collect();
    println!("  s3://{bucket}/{key}: {} rows", metadata.num_rows());
    println!("  columns: {}", columns.join(", "));
    for row in reader.get_row_iter(None)?.take(limit) {
        println!("  {}", row?);
    }
    Ok(())
}

async fn database(url: &str) -> anyhow::Result<sqlx::PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connect to DATABASE_URL")
}

async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let pool = database(database_url).await?;
    let migrator = adapters::db::migrator(&repo_root().join("infra/migrations")).await?;
    migrator.run(&pool).await.context("apply migrations")?;
    println!("  migrations applied ({} known)", migrator.iter().count());
    Ok(())
}

async fn produce_samples(brokers: &str) -> anyhow::Result<()> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
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

async fn redrive(dlq: &str, group: &str, database_url: Option<&str>) -> anyhow::Result<()> {
    // KAFKA_AUTH=iam reaches MSK with the caller's AWS credentials; locally, plaintext.
    let kafka = match std::env::var_os("KAFKA_BROKERS") {
        Some(_) => adapters::config::from_env::<adapters::config::KafkaConfig>()?,
        None => adapters::config::KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            auth: adapters::config::KafkaAuth::Plaintext,
        },
    };
    let sdk = adapters::aws::sdk_config().await;
    let redriven = devtools::redrive::redrive(&kafka, &sdk, dlq, group).await?;
    if redriven.per_topic.is_empty() {
        println!("  {dlq}: nothing to redrive");
    }
    for (topic, records) in &redriven.per_topic {
        println!("  {dlq} -> {topic}: {records} records");
    }
    if let Some(url) = database_url {
        let total = i64::try_from(redriven.total()).unwrap_or(i64::MAX);
        let marked =
            devtools::redrive::mark_requests_done(&database(url).await?, dlq, total).await?;
        if marked > 0 {
            println!("  {dlq}: {marked} redrive requests of the admin API marked done");
        }
    }
    Ok(())
}

async fn coupon_outcome(request_id: &str, database_url: &str) -> anyhow::Result<()> {
    match adapters::coupons::lookup(&database(database_url).await?, request_id).await? {
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
