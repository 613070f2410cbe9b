//! Test support: every test gets its own freshly migrated database, its own queues and bucket
//! in the local AWS endpoint, and (when it needs one) its own image server, so tests run in
//! parallel against the real stack without seeing each other. Addresses default to the local
//! stack (`make up`); the same environment variables override them.

use std::path::{Path, PathBuf};

mod admin;
mod alerts;
mod aws;
mod bench;
mod cdp;
mod db;
mod kafka;
mod lambda;
mod outages;
mod toonpick;
mod webtoon;

pub use admin::*;
pub use alerts::*;
pub use aws::*;
pub use bench::*;
pub use cdp::*;
pub use db::*;
pub use kafka::*;
pub use lambda::*;
pub use outages::*;
pub use toonpick::*;
pub use webtoon::*;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub(crate) fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..12])
}
