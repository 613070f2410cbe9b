//! Typed configuration read once per cold start from the environment. Secrets are wrapped in
//! [`SecretString`] so neither `Debug` nor a log line can print them.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use secrecy::SecretString;

/// A required variable; the error names it, so a misconfigured function says what is missing.
pub fn required(name: &str) -> anyhow::Result<String> {
    optional(name).ok_or_else(|| anyhow!("environment variable {name} is not set"))
}

/// A variable that may be absent; empty counts as absent (templates often render unset as "").
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A parsed variable with a default.
pub fn parsed_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    optional(name).map_or(Ok(default), |raw| {
        raw.trim()
            .parse()
            .with_context(|| format!("environment variable {name}={raw:?} is not valid"))
    })
}

fn millis_or(name: &str, default_ms: u64) -> anyhow::Result<Duration> {
    parsed_or(name, default_ms).map(Duration::from_millis)
}

/// Where the database credentials come from.
#[derive(Debug, Clone)]
pub enum DatabaseSource {
    /// A full URL; local development and tests.
    Url(SecretString),
    /// A Secrets Manager secret in the RDS format (`host`, `port`, `username`, `password`,
    /// `dbname`); deployed functions.
    SecretArn(String),
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub source: DatabaseSource,
    /// Per function instance. A Lambda instance handles one invocation at a time, so a few
    /// connections cover the batch's own concurrency without exhausting the database.
    pub max_connections: u32,
    pub statement_timeout: Duration,
    pub acquire_timeout: Duration,
    /// `require` unless told otherwise: RDS enforces TLS, only the local stack runs without.
    pub ssl_mode: sqlx::postgres::PgSslMode,
}

impl DatabaseConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let source = match (optional("DATABASE_URL"), optional("DATABASE_SECRET_ARN")) {
            (Some(url), _) => DatabaseSource::Url(SecretString::from(url)),
            (None, Some(arn)) => DatabaseSource::SecretArn(arn),
            (None, None) => {
                return Err(anyhow!(
                    "set DATABASE_SECRET_ARN (deployed) or DATABASE_URL (local)"
                ));
            }
        };
        Ok(Self {
            source,
            max_connections: parsed_or("DB_MAX_CONNECTIONS", 4)?,
            statement_timeout: millis_or("DB_STATEMENT_TIMEOUT_MS", 5_000)?,
            acquire_timeout: millis_or("DB_ACQUIRE_TIMEOUT_MS", 3_000)?,
            ssl_mode: parsed_or("DB_SSL_MODE", sqlx::postgres::PgSslMode::Require)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: SecretString,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: usize,
}

impl RedisConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            url: SecretString::from(required("REDIS_URL")?),
            connect_timeout: millis_or("REDIS_CONNECT_TIMEOUT_MS", 5_000)?,
            response_timeout: millis_or("REDIS_RESPONSE_TIMEOUT_MS", 3_000)?,
            retries: parsed_or("REDIS_RETRIES", 3)?,
        })
    }
}

/// How the functions' own Kafka clients reach the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAuth {
    /// The local broker.
    Plaintext,
    /// MSK's IAM listener: SASL/OAUTHBEARER over TLS with a SigV4 token.
    MskIam,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub auth: KafkaAuth,
}

impl KafkaConfig {
    /// `KAFKA_BROKERS`, and `KAFKA_AUTH`: `iam` (deployed) or `none` (the default).
    pub fn from_env() -> anyhow::Result<Self> {
        let auth = match optional("KAFKA_AUTH").as_deref() {
            None | Some("none") => KafkaAuth::Plaintext,
            Some("iam") => KafkaAuth::MskIam,
            Some(other) => anyhow::bail!("KAFKA_AUTH must be iam or none, not {other:?}"),
        };
        Ok(Self {
            brokers: required("KAFKA_BROKERS")?,
            auth,
        })
    }
}

/// Where a Kafka consumer's dead letters go: the brokers, and the bucket that takes the ones
/// too large for the dead-letter topic (`DEAD_LETTER_BUCKET`).
#[derive(Debug, Clone)]
pub struct DeadLetterConfig {
    pub kafka: KafkaConfig,
    pub bucket: String,
}

impl DeadLetterConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            kafka: KafkaConfig::from_env()?,
            bucket: required("DEAD_LETTER_BUCKET")?,
        })
    }
}

/// Comma-separated list, trimmed, empties dropped.
pub fn list(name: &str) -> Vec<String> {
    optional(name)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn secrets_never_print() {
        let config = RedisConfig {
            url: SecretString::from("redis://:hunter2@cache:6379".to_owned()),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(3),
            retries: 3,
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(config.url.expose_secret().contains("hunter2"));
    }
}
