//! Typed configuration, read once per cold start from the environment. Each setting is a
//! field of a `Deserialize` struct, read from the variable of the same name in upper case by
//! serde (the `envy` crate), with its default beside it; [`from_env`] reads any such struct, so
//! a function's own settings are a struct, not a series of lookups. Secrets are wrapped in
//! [`SecretString`] so neither `Debug` nor a log line can print them.

use std::str::FromStr;
use std::time::Duration;

use anyhow::anyhow;
use secrecy::SecretString;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// Reads `T` from the environment. A variable set to blanks counts as unset (templates often
/// render an unset parameter as ""), and an error names the variable, so a misconfigured
/// function says what is missing or wrong.
pub fn from_env<T: DeserializeOwned>() -> anyhow::Result<T> {
    // Variables that are not UTF-8 are none of ours (and `env::vars` would panic on them).
    from_vars(
        std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }),
    )
}

/// Reads `T` from the variables that start with `prefix`, without it (`IMAGE_MAX_BYTES` is the
/// field `max_bytes` for the prefix `IMAGE_`): one struct for several families of variables.
pub fn from_env_prefixed<T: DeserializeOwned>(prefix: &str) -> anyhow::Result<T> {
    from_vars(std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        let rest = name.strip_prefix(prefix)?.to_owned();
        Some((rest, value.into_string().ok()?))
    }))
    .map_err(|err| anyhow!("{prefix}*: {err}"))
}

/// Only upper-case names are settings (envy folds case, so `path` beside `PATH` would clash);
/// values are trimmed, and a blank one counts as unset.
fn from_vars<T: DeserializeOwned>(
    vars: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<T> {
    let settings = vars
        .into_iter()
        .filter(|(name, _)| !name.chars().any(char::is_lowercase))
        .map(|(name, value)| (name, value.trim().to_owned()))
        .filter(|(_, value)| !value.is_empty());
    envy::from_iter(settings).map_err(|err| match err {
        envy::Error::MissingValue(field) => {
            anyhow!("environment variable {} is not set", field.to_uppercase())
        }
        envy::Error::Custom(message) => anyhow!("environment: {message}"),
    })
}

/// A value parsed with its `FromStr` (types without serde support, such as `PgSslMode`).
fn parsed<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    Option::<String>::deserialize(deserializer)?
        .map(|raw| raw.trim().parse().map_err(D::Error::custom))
        .transpose()
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

/// `DATABASE_URL` or `DATABASE_SECRET_ARN`, and the pool's `DB_*` settings.
#[derive(Deserialize)]
struct DatabaseEnv {
    database_url: Option<String>,
    database_secret_arn: Option<String>,
    db_max_connections: Option<u32>,
    db_statement_timeout_ms: Option<u64>,
    db_acquire_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "parsed")]
    db_ssl_mode: Option<sqlx::postgres::PgSslMode>,
}

impl DatabaseConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let env: DatabaseEnv = from_env()?;
        let source = match (env.database_url, env.database_secret_arn) {
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
            max_connections: env.db_max_connections.unwrap_or(4),
            statement_timeout: Duration::from_millis(env.db_statement_timeout_ms.unwrap_or(5_000)),
            acquire_timeout: Duration::from_millis(env.db_acquire_timeout_ms.unwrap_or(3_000)),
            ssl_mode: env
                .db_ssl_mode
                .unwrap_or(sqlx::postgres::PgSslMode::Require),
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

/// `REDIS_URL` and the connection's `REDIS_*` settings.
#[derive(Deserialize)]
struct RedisEnv {
    redis_url: String,
    redis_connect_timeout_ms: Option<u64>,
    redis_response_timeout_ms: Option<u64>,
    redis_retries: Option<usize>,
}

impl RedisConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let env: RedisEnv = from_env()?;
        Ok(Self {
            url: SecretString::from(env.redis_url),
            connect_timeout: Duration::from_millis(env.redis_connect_timeout_ms.unwrap_or(5_000)),
            response_timeout: Duration::from_millis(env.redis_response_timeout_ms.unwrap_or(3_000)),
            retries: env.redis_retries.unwrap_or(3),
        })
    }
}

/// How the functions' own Kafka clients reach the brokers (`KAFKA_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum KafkaAuth {
    /// The local broker: `none`, the default.
    #[default]
    #[serde(rename = "none")]
    Plaintext,
    /// MSK's IAM listener: SASL/OAUTHBEARER over TLS with a SigV4 token; `iam`.
    #[serde(rename = "iam")]
    MskIam,
}

/// `KAFKA_BROKERS` and `KAFKA_AUTH`.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    #[serde(rename = "kafka_brokers")]
    pub brokers: String,
    #[serde(rename = "kafka_auth", default)]
    pub auth: KafkaAuth,
}

/// Where a Kafka consumer's dead letters go: the brokers, and the bucket that takes the ones
/// too large for the dead-letter topic (`DEAD_LETTER_BUCKET`).
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetterConfig {
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    #[serde(rename = "dead_letter_bucket")]
    pub bucket: String,
}

/// A comma-separated list, trimmed, empties dropped.
pub fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

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

    #[test]
    fn settings_are_read_by_name_with_their_defaults() -> anyhow::Result<()> {
        let config: DeadLetterConfig = from_vars(vars(&[
            ("KAFKA_BROKERS", "b-1:9098"),
            ("KAFKA_AUTH", "iam"),
            ("DEAD_LETTER_BUCKET", "dead-letters"),
            ("UNRELATED", "x"),
        ]))?;
        assert_eq!(config.kafka.brokers, "b-1:9098");
        assert_eq!(config.kafka.auth, KafkaAuth::MskIam);
        assert_eq!(config.bucket, "dead-letters");
        let local: KafkaConfig = from_vars(vars(&[("KAFKA_BROKERS", "127.0.0.1:9092")]))?;
        assert_eq!(local.auth, KafkaAuth::Plaintext);
        Ok(())
    }

    #[test]
    fn a_missing_or_blank_variable_is_named_and_a_bad_one_refused() {
        let missing = from_vars::<DeadLetterConfig>(vars(&[
            ("KAFKA_BROKERS", "b-1:9098"),
            ("DEAD_LETTER_BUCKET", "  "),
        ]))
        .expect_err("the bucket is blank");
        assert_eq!(
            missing.to_string(),
            "environment variable DEAD_LETTER_BUCKET is not set"
        );
        let wrong = from_vars::<KafkaConfig>(vars(&[
            ("KAFKA_BROKERS", "b-1:9098"),
            ("KAFKA_AUTH", "scram"),
        ]))
        .expect_err("no such auth");
        assert!(wrong.to_string().contains("scram"), "{wrong}");
        let bad = from_vars::<RedisEnv>(vars(&[
            ("REDIS_URL", "redis://cache"),
            ("REDIS_RETRIES", "many"),
        ]));
        assert!(bad.is_err());
        // Padded numbers are read, and lower-case names are not settings.
        let padded: RedisEnv = from_vars(vars(&[
            ("REDIS_URL", "redis://cache"),
            ("REDIS_RETRIES", " 5 "),
            ("redis_retries", "7"),
        ]))
        .expect("padded");
        assert_eq!(padded.redis_retries, Some(5));
    }

    #[test]
    fn lists_are_trimmed_and_empties_dropped() -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Hosts {
            #[serde(default, deserialize_with = "comma_list")]
            allow_hosts: Vec<String>,
        }
        let hosts: Hosts = from_vars(vars(&[("ALLOW_HOSTS", " 127.0.0.1, ,localhost ")]))?;
        assert_eq!(hosts.allow_hosts, ["127.0.0.1", "localhost"]);
        let none: Hosts = from_vars(vars(&[]))?;
        assert!(none.allow_hosts.is_empty());
        Ok(())
    }
}
