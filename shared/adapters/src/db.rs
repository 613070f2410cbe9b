//! PostgreSQL: one small pool per function instance, connected lazily so a cold start survives a
//! database blip, with a statement timeout so a stuck query cannot eat the invocation.

use anyhow::Context as _;
use aws_config::SdkConfig;
use domain::WorkerError;
use domain::error::{Flaw, Rejection};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, migrate::Migrator};

use crate::config::{DatabaseConfig, DatabaseSource};

/// Builds the pool without connecting. With a secret ARN the credentials are read here, once.
pub async fn pool(config: &DatabaseConfig, aws: &SdkConfig) -> anyhow::Result<PgPool> {
    let options = match &config.source {
        DatabaseSource::Url(url) => url
            .expose_secret()
            .parse::<PgConnectOptions>()
            .context("DATABASE_URL is not a valid PostgreSQL URL")?,
        DatabaseSource::SecretArn(arn) => options_from_secret(aws, arn).await?,
    };
    Ok(pool_with(config, options))
}

/// Builds the pool from explicit connect options (tests point it at their own database).
pub fn pool_with(config: &DatabaseConfig, options: PgConnectOptions) -> PgPool {
    let timeout_ms = config.statement_timeout.as_millis().to_string();
    let options = options
        .ssl_mode(config.ssl_mode)
        .application_name(&crate::telemetry::function_name())
        .options([("statement_timeout", timeout_ms.as_str())]);
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options)
}

/// The RDS-managed secret format.
#[derive(Deserialize)]
struct RdsSecret {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    username: String,
    password: SecretString,
    #[serde(default = "default_dbname")]
    dbname: String,
}

fn default_port() -> u16 {
    5432
}

fn default_dbname() -> String {
    "postgres".to_owned()
}

async fn options_from_secret(aws: &SdkConfig, arn: &str) -> anyhow::Result<PgConnectOptions> {
    let value = crate::aws::secrets(aws)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .with_context(|| format!("read database secret {arn}"))?;
    let raw = value
        .secret_string()
        .with_context(|| format!("secret {arn} has no string value"))?;
    let secret: RdsSecret = serde_json::from_str(raw)
        .with_context(|| format!("secret {arn} is not an RDS credentials document"))?;
    Ok(PgConnectOptions::new()
        .host(&secret.host)
        .port(secret.port)
        .username(&secret.username)
        .password(secret.password.expose_secret())
        .database(&secret.dbname))
}

/// Maps a database error onto the retry decision. Data and integrity errors (SQLSTATE classes
/// 22 and 23) come from the record itself and will fail again; anything else (connection lost,
/// pool timeout, statement timeout, serialization failure) may pass on a retry.
pub fn classify(err: sqlx::Error) -> WorkerError {
    if let sqlx::Error::Database(db) = &err
        && let Some(code) = db.code()
        && (code.starts_with("22") || code.starts_with("23"))
    {
        let reason = format!("database rejected the record: {db}");
        return WorkerError::Rejected(Rejection::new(Flaw::RefusedByStore, reason).caused_by(err));
    }
    WorkerError::retryable(anyhow::Error::new(err).context("database"))
}

/// The project's migrations, read from `infra/migrations` at run time (deploy tooling and tests
/// apply them; functions never migrate on their own).
pub async fn migrator(dir: &std::path::Path) -> anyhow::Result<Migrator> {
    Migrator::new(dir)
        .await
        .with_context(|| format!("read migrations from {}", dir.display()))
}
