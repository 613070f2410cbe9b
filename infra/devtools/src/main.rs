//! `devtools migrate`: applies infra/migrations to $DATABASE_URL (used by `make up` and by
//! deploy pipelines before a new version of the functions goes live).

use std::path::Path;

use anyhow::{Context as _, bail};
use sqlx::postgres::PgPoolOptions;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let command = std::env::args().nth(1).unwrap_or_default();
    if command != "migrate" {
        bail!("usage: devtools migrate   (reads DATABASE_URL)");
    }
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .context("connect to DATABASE_URL")?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let migrator = adapters::db::migrator(&dir).await?;
    migrator.run(&pool).await.context("apply migrations")?;
    println!("  migrations applied ({} known)", migrator.iter().count());
    Ok(())
}
