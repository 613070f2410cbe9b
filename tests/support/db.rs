//! Databases: one per test, copied from a template migrated once per migration set.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection, PgPool};

use crate::{env_or, repo_root, unique};

/// A database of its own for one test, copied from the migrated template.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub options: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> anyhow::Result<Self> {
        let admin_url = env_or(
            "TEST_ADMIN_DATABASE_URL",
            "postgres://postgres:postgres@127.0.0.1:5432/postgres",
        );
        let admin_options: PgConnectOptions = admin_url.parse()?;
        let mut admin = PgConnection::connect_with(&admin_options)
            .await
            .context("connect to PostgreSQL (is the stack up? make up)")?;
        drop_stale_databases(&mut admin).await?;
        let template = migrated_template(&mut admin, &admin_options).await?;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let name = format!("test_{secs}_{}", unique(""));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template}"
        )))
        .execute(&mut admin)
        .await?;
        let options = admin_options.database(&name);
        let pool = adapters::db::pool_with(&db_config(), options.clone());
        Ok(Self {
            pool,
            name,
            options,
        })
    }

    /// Every row of the webtoon tables as text, for "nothing changed" assertions.
    pub async fn snapshot(&self) -> anyhow::Result<Vec<String>> {
        let mut rows = Vec::new();
        for table in [
            "webtoons",
            "authors",
            "webtoon_authors",
            "genres",
            "webtoon_genres",
            "episodes",
            "webtoon_requests",
        ] {
            let sql = format!("SELECT '{table}: ' || t::text FROM {table} t ORDER BY t::text");
            let mut table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            rows.append(&mut table_rows);
        }
        Ok(rows)
    }

    pub async fn count(&self, sql: &'static str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }
}

pub fn db_config() -> adapters::config::DatabaseConfig {
    adapters::config::DatabaseConfig {
        source: adapters::config::DatabaseSource::Url(String::new().into()),
        max_connections: 4,
        statement_timeout: Duration::from_secs(5),
        acquire_timeout: Duration::from_secs(3),
        ssl_mode: sqlx::postgres::PgSslMode::Disable,
    }
}

/// The database every test database is copied from: migrated once per set of migrations (its
/// name carries their checksums), so a test's database is a file copy, not a run of every
/// migration. Built under a session advisory lock, so parallel tests and test processes build
/// it once; templates of other migration sets are dropped then.
async fn migrated_template(
    admin: &mut PgConnection,
    admin_options: &PgConnectOptions,
) -> anyhow::Result<String> {
    use std::hash::{DefaultHasher, Hash as _, Hasher as _};
    const LOCK: i64 = 0x07e5_70db;
    let migrator = adapters::db::migrator(&repo_root().join("infra/migrations")).await?;
    let mut hasher = DefaultHasher::new();
    for migration in migrator.iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    let name = format!("test_template_{:016x}", hasher.finish());
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut *admin)
        .await?;
    let built = async {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut *admin)
                .await?;
        if exists {
            return anyhow::Ok(());
        }
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'test\\_template\\_%'",
        )
        .fetch_all(&mut *admin)
        .await?;
        for other in others {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {other} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await?;
        }
        let building = format!("{name}_building");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .execute(&mut *admin)
            .await?;
        let pool = adapters::db::pool_with(&db_config(), admin_options.clone().database(&building));
        migrator.run(&pool).await?;
        pool.close().await;
        // Renamed only once migrated: a template that exists is complete.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {building} RENAME TO {name}"
        )))
        .execute(&mut *admin)
        .await?;
        Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *admin)
        .await?;
    built.map(|()| name)
}

/// Test databases older than an hour are leftovers of earlier runs.
async fn drop_stale_databases(admin: &mut PgConnection) -> anyhow::Result<()> {
    let cutoff = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() - 3600;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'")
            .fetch_all(&mut *admin)
            .await?;
    for name in names {
        let created = name
            .split('_')
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if created < cutoff {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
    Ok(())
}
