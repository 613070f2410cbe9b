//! The shared clients against the real services: the Redis manager with the platform's
//! timeouts, and database credentials read from Secrets Manager as deployed functions do.

use std::time::Duration;

use adapters::config::{DatabaseConfig, DatabaseSource, RedisConfig};
use integration_tests::{TestAws, TestDb, unique};

#[tokio::test]
async fn redis_manager_connects_lazily_and_answers() -> anyhow::Result<()> {
    let config = RedisConfig {
        url: std::env::var("REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
            .into(),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(3),
        retries: 3,
    };
    let mut redis = adapters::redis::connect_lazy(&config)?;
    let pong: String = redis::cmd("PING").query_async(&mut redis).await?;
    assert_eq!(pong, "PONG");

    // Nothing listens on port 1: the lazy manager is created, the first command fails fast.
    let dead = RedisConfig {
        url: "redis://127.0.0.1:1".to_owned().into(),
        ..config
    };
    let mut redis = adapters::redis::connect_lazy(&dead)?;
    let started = std::time::Instant::now();
    let result: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut redis).await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(30));
    Ok(())
}

#[tokio::test]
async fn database_credentials_come_from_secrets_manager() -> anyhow::Result<()> {
    let (db, aws) = (TestDb::new().await?, TestAws::new().await?);
    let secret = serde_json::json!({
        "host": "127.0.0.1", "port": 5432, "username": "postgres",
        "password": "postgres", "dbname": db.name,
    });
    let arn = adapters::aws::secrets(&aws.sdk)
        .create_secret()
        .name(unique("test/db/"))
        .secret_string(secret.to_string())
        .send()
        .await?
        .arn
        .unwrap_or_default();
    let config = DatabaseConfig {
        source: DatabaseSource::SecretArn(arn),
        ..integration_tests::db_config()
    };
    let pool = adapters::db::pool(&config, &aws.sdk).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'webtoon_requests'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(tables, 1);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await?;
    assert_eq!(timeout, "5s");
    Ok(())
}
