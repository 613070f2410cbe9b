//! Redis: a connection manager that reconnects by itself, with the platform's timeouts
//! (connect 5 s, response 3 s, 3 retries). It connects lazily, on the first command.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::config::RedisConfig;

pub fn connect_lazy(config: &RedisConfig) -> anyhow::Result<ConnectionManager> {
    let client = ::redis::Client::open(config.url.expose_secret())
        .context("REDIS_URL is not a valid Redis URL")?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_number_of_retries(config.retries);
    ConnectionManager::new_lazy_with_config(client, manager_config)
        .context("create the Redis connection manager")
}

/// Keys asked for per SCAN step, and commands per pipelined round trip.
const BATCH: usize = 1_000;

/// Every key matching `pattern`, found with SCAN (never KEYS, which blocks the server), each
/// once, sorted.
pub async fn scan_match(
    conn: &mut ConnectionManager,
    pattern: &str,
) -> ::redis::RedisResult<Vec<String>> {
    let mut keys = std::collections::BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(conn)
            .await?;
        // SCAN may return a key more than once; the set keeps one.
        keys.extend(batch);
        if next == 0 {
            return Ok(keys.into_iter().collect());
        }
        cursor = next;
    }
}

/// The string values of `keys` (None where a key is gone), one pipelined round trip per
/// thousand keys.
pub async fn get_pipelined(
    conn: &mut ConnectionManager,
    keys: &[String],
) -> ::redis::RedisResult<Vec<Option<String>>> {
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH) {
        let mut pipe = ::redis::pipe();
        for key in chunk {
            pipe.get(key);
        }
        let replies: Vec<Option<String>> = pipe.query_async(conn).await?;
        values.extend(replies);
    }
    Ok(values)
}

/// Deletes `keys` (UNLINK: freed in the background), one pipelined round trip per thousand
/// keys. Returns how many existed.
pub async fn unlink_pipelined(
    conn: &mut ConnectionManager,
    keys: &[String],
) -> ::redis::RedisResult<u64> {
    let mut removed = 0;
    for chunk in keys.chunks(BATCH) {
        let mut pipe = ::redis::pipe();
        for key in chunk {
            pipe.unlink(key);
        }
        let replies: Vec<u64> = pipe.query_async(conn).await?;
        removed += replies.iter().sum::<u64>();
    }
    Ok(removed)
}
