//! `GET /admin/health`: whether the database, Redis, the Kafka broker and the AWS endpoint
//! answer, with their latencies. The only route without the authorizer, so it says nothing a
//! stranger could use: no host, no version, no error text; what failed is logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::http::{Problem, json};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::Deps;

/// How long a dependency may take to answer before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the health check reaches.
pub struct Probes {
    pub db: PgPool,
    pub redis: redis::aio::ConnectionManager,
    /// `KAFKA_BROKERS`: the first one is dialled.
    pub brokers: String,
    pub sqs: aws_sdk_sqs::Client,
    /// A queue of ours the AWS endpoint is asked about.
    pub queue_url: String,
}

/// Every dependency's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when every dependency answered, else `degraded` (and HTTP 503).
    pub status: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// database, redis, kafka or aws.
    pub name: String,
    pub ok: bool,
    pub latency_ms: f64,
}

#[utoipa::path(get, path = "/admin/health", tag = "operations", security(()),
    responses(
        (status = 200, description = "Every dependency answered", body = Health),
        (status = 503, description = "A dependency did not answer", body = Health)))]
pub async fn health(State(deps): State<Arc<Deps>>) -> Result<Response, Problem> {
    let probes = &deps.probes;
    let (database, redis, kafka, aws) = futures::join!(
        probe("database", async {
            sqlx::query_file_scalar!("sql/ping.sql")
                .fetch_one(&probes.db)
                .await
                .map(drop)
                .map_err(anyhow::Error::from)
        }),
        probe("redis", async {
            let mut conn = probes.redis.clone();
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(drop)
                .map_err(anyhow::Error::from)
        }),
        probe("kafka", async {
            let broker = probes
                .brokers
                .split(',')
                .map(str::trim)
                .find(|b| !b.is_empty())
                .ok_or_else(|| anyhow::anyhow!("no broker configured"))?;
            tokio::net::TcpStream::connect(broker)
                .await
                .map(drop)
                .map_err(anyhow::Error::from)
        }),
        probe("aws", async {
            probes
                .sqs
                .get_queue_attributes()
                .queue_url(&probes.queue_url)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .send()
                .await
                .map(drop)
                .map_err(|err| {
                    anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(err).to_string())
                })
        }),
    );
    let checks = vec![database, redis, kafka, aws];
    let healthy = checks.iter().all(|check| check.ok);
    let health = Health {
        status: if healthy { "ok" } else { "degraded" }.to_owned(),
        checks,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json(status, &health))
}

async fn probe(name: &str, check: impl Future<Output = anyhow::Result<()>>) -> Check {
    let started = Instant::now();
    let ok = match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(dependency = name, error = %format!("{err:#}"), "health: dependency failed");
            false
        }
        Err(_) => {
            tracing::warn!(
                dependency = name,
                timeout_ms = PROBE_TIMEOUT.as_millis() as u64,
                "health: dependency timed out"
            );
            false
        }
    };
    Check {
        name: name.to_owned(),
        ok,
        latency_ms: (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
    }
}
