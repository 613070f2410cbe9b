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
