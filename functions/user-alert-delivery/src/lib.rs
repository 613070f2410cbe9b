//! user-alert-delivery: `user-alert-topic` (consumer group `user-alert-delivery`, SPEC §2, seed
//! 004). Per batch, set-based:
//!
//! 1. **Statuses, exactly once.** One statement creates the status of every (alert, user) pair
//!    not seen before, with one pending delivery per live channel of the user (each SNS push
//!    endpoint, each WebSocket connection); a user with none is `stored`. A replayed or
//!    duplicated pair creates nothing.
//! 2. **Deliveries, once per channel.** The batch's pending deliveries are claimed (a sender
//!    skips rows another holds, so a batch delivered to two invocations at once sends each
//!    delivery once), sent [`Deps::concurrency`] at a time, and settled: `delivered`; `gone`
//!    when the endpoint is disabled or deleted or the connection is gone (410), which removes it
//!    and never retries; or given back after a transient failure, which fails the attempt as
//!    retryable. The shared processor retries the batch: the statuses are there already, so
//!    only the deliveries still pending are sent again.
//! 3. **Status.** Each pair still `delivering` gets what its deliveries came to
//!    (`domain::alert::status`).
//!
//! A record that is not a user-alert, or names an alert that does not exist, goes to the
//! dead-letter topic with its reason.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use adapters::bootstrap::KafkaConsumer;
use adapters::kafka::{self, DeadLetters, KafkaBatchSummary, OnFailure, Record, Retry};
use adapters::{aws, config, db};
use aws_lambda_events::event::kafka::KafkaEvent;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use chrono::{DateTime, Utc};
use domain::WorkerError;
use domain::alert::{self, Alert, DeliveryState, Platform, UserAlert};
use futures::StreamExt as _;
use serde::Deserialize;
use sqlx::PgPool;

pub const CONSUMER: &str = "user-alert-delivery";
pub const DEAD_LETTER_TOPIC: &str = "user-alert-topic-dlq";
/// A claimed delivery not settled within this time is taken over (its sender died).
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(30);
/// Deliveries in flight at once, by default.
pub const CONCURRENCY: usize = 32;
/// A connection younger than this is not removed on a 410: API Gateway answers 410 while a new
/// connection's handshake is still finishing.
pub const NEW_CONNECTION: Duration = Duration::from_secs(10);

/// user-alert-delivery's own settings.
#[derive(Deserialize)]
struct Settings {
    dead_letter_topic: Option<String>,
    /// The WebSocket API's management endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    websocket_endpoint: String,
    delivery_concurrency: Option<usize>,
}

pub struct Deps {
    pub db: PgPool,
    pub sns: aws_sdk_sns::Client,
    pub web: aws_sdk_apigatewaymanagement::Client,
    pub concurrency: usize,
    pub dead_letters: DeadLetters,
    pub on_failure: OnFailure,
}

impl Deps {
    /// `WEBSOCKET_ENDPOINT`, `DELIVERY_CONCURRENCY` (default 32), `DEAD_LETTER_TOPIC` (default
    /// `user-alert-topic-dlq`) and the Kafka consumer's base.
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        let base = KafkaConsumer::from_env(CONSUMER).await?;
        Ok(Self {
            db: base.db,
            sns: aws::sns(&base.sdk),
            web: connections_client(&base.sdk, &settings.websocket_endpoint),
            concurrency: settings.delivery_concurrency.unwrap_or(CONCURRENCY).max(1),
            dead_letters: base.dead_letters.to_topic(
                settings
                    .dead_letter_topic
                    .unwrap_or_else(|| DEAD_LETTER_TOPIC.to_owned()),
            ),
            on_failure: OnFailure::RetryThenDeadLetter(Retry::seed()),
        })
    }
}

/// The WebSocket API's management client, at `endpoint`.
pub fn connections_client(
    sdk: &aws_config::SdkConfig,
    endpoint: &str,
) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// A valid record: the pair, and the record itself, dead-lettered if its alert is unknown.
pub struct Wanted {
    pub pair: UserAlert,
    pub record: Record,
}

/// What one batch came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub statuses: usize,
    pub delivered: usize,
    pub gone: usize,
}

/// Handles one batch.
pub async fn handle(event: KafkaEvent, deps: &Deps) -> Result<KafkaBatchSummary, WorkerError> {
    kafka::process(
        &event,
        |record| {
            Ok(Wanted {
                pair: alert::parse_user_alert(&record.value)?,
                record: record.clone(),
            })
        },
        |batch| async move { deliver(deps, &batch).await.map(|done| done.statuses) },
        &deps.dead_letters,
        &deps.on_failure,
    )
    .await
}

/// Creates the batch's statuses and sends its pending deliveries.
pub async fn deliver(deps: &Deps, batch: &[Wanted]) -> Result<Delivered, WorkerError> {
    let alert_ids: Vec<i64> = batch.iter().map(|w| w.pair.alert_id).collect();
    let user_ids: Vec<&str> = batch.iter().map(|w| w.pair.user_id.as_str()).collect();

    let unknown: HashSet<i64> = sqlx::query_file_scalar!("sql/unknown_alerts.sql", &alert_ids)
        .fetch_all(&deps.db)
        .await
        .map_err(db::classify)?
        .into_iter()
        .collect();
    if !unknown.is_empty() {
        let orphans: Vec<(Record, String)> = batch
            .iter()
            .filter(|w| unknown.contains(&w.pair.alert_id))
            .map(|w| {
                let reason = format!("alert {} does not exist", w.pair.alert_id);
                (w.record.clone(), reason)
            })
            .collect();
        tracing::warn!(
            records = orphans.len(),
            error.kind = "inconsistent",
            "records name unknown alerts"
        );
        deps.dead_letters.send_all(&orphans).await?;
    }

    let created = sqlx::query_file!("sql/create_statuses.sql", &alert_ids, &user_ids as &[&str])
        .fetch_one(&deps.db)
        .await
        .map_err(db::classify)?;
    let mut done = Delivered {
        statuses: usize::try_from(created.created).unwrap_or(usize::MAX),
        ..Delivered::default()
    };

    let claimed = sqlx::query_file_as!(
        Claimed,
        "sql/claim_deliveries.sql",
        &alert_ids,
        &user_ids as &[&str],
        CLAIM_TIMEOUT.as_secs_f64()
    )
    .fetch_all(&deps.db)
    .await
    .map_err(db::classify)?;
    let mut failure = None;
    if let Some(claim) = claimed.first().map(|c| c.claimed_at) {
        let sent = send_claimed(deps, claimed, claim, &mut done).await;
        failure = match sent {
            Ok(failure) => failure,
            Err(err) => {
                // Give the claim back so a retry sends them now, not after the claim's timeout.
                if let Err(release) = sqlx::query_file!("sql/release_claim.sql", claim)
                    .execute(&deps.db)
                    .await
                {
                    tracing::warn!(error = %release, "claim not given back; it expires by itself");
                }
                return Err(err);
            }
        };
    }
    // Deliveries of this batch another sender holds (a duplicate batch at once, or a sender that
    // died within its claim): confirm the batch only once they are settled, so the records are
    // retried, and dead-lettered for a redrive if they stay held, never dropped.
    let held = sqlx::query_file_scalar!(
        "sql/held_elsewhere.sql",
        &alert_ids,
        &user_ids as &[&str],
        CLAIM_TIMEOUT.as_secs_f64()
    )
    .fetch_one(&deps.db)
    .await
    .map_err(db::classify)?;
    if held > 0 && failure.is_none() {
        failure = Some(WorkerError::retryable(anyhow::anyhow!(
            "{held} deliveries of this batch are being sent by another invocation"
        )));
    }
    update_statuses(deps, &alert_ids, &user_ids).await?;
    tracing::info!(
        records = batch.len(),
        statuses = done.statuses,
        delivered = done.delivered,
        gone = done.gone,
        "user alerts delivered"
    );
    match failure {
        Some(err) => Err(err),
        None => Ok(done),
    }
}

/// Sends the claimed deliveries and settles them under `claim`; answers the first transient
/// failure, if any.
async fn send_claimed(
    deps: &Deps,
    claimed: Vec<Claimed>,
    claim: DateTime<Utc>,
    done: &mut Delivered,
) -> Result<Option<WorkerError>, WorkerError> {
    let wanted: Vec<i64> = claimed.iter().map(|c| c.alert_id).collect();
    let alerts: HashMap<i64, Alert> =
        sqlx::query_file_as!(Alert, "sql/alerts.sql", &wanted as &[i64])
            .fetch_all(&deps.db)
            .await
            .map_err(db::classify)?
            .into_iter()
            .map(|alert| (alert.id, alert))
            .collect();
    let deliveries: Vec<Delivery> = claimed
        .into_iter()
        .map(|c| Delivery {
            alert_id: c.alert_id,
            user_id: c.user_id,
            channel: c.channel,
            target: c.target,
            platform: c.platform.as_deref().and_then(Platform::parse),
        })
        .collect();
    let alerts = &alerts;
    let outcomes: Vec<(&Delivery, Outcome)> = futures::stream::iter(&deliveries)
        .map(|delivery| async move {
            let outcome = match alerts.get(&delivery.alert_id) {
                Some(alert) => send(deps, alert, delivery).await,
                None => Outcome::Undeliverable("the alert no longer exists".to_owned()),
            };
            (delivery, outcome)
        })
        .buffer_unordered(deps.concurrency)
        .collect()
        .await;
    settle(deps, &outcomes, claim, done).await
}

/// A claimed row (`sql/claim_deliveries.sql`).
struct Claimed {
    alert_id: i64,
    user_id: String,
    channel: String,
    target: String,
    platform: Option<String>,
    /// The claim's time: its token.
    claimed_at: DateTime<Utc>,
}

/// A claimed delivery.
struct Delivery {
    alert_id: i64,
    user_id: String,
    channel: String,
    target: String,
    platform: Option<Platform>,
}

/// What one send came to.
enum Outcome {
    Delivered,
    /// The endpoint or connection no longer exists: removed, never retried.
    Gone(String),
    /// This message cannot be delivered (the platform refused it, the alert is gone): settled
    /// as failed, the endpoint kept, never retried.
    Undeliverable(String),
    /// Transient: the delivery stays pending and the batch is retried.
    Failed(WorkerError),
}

async fn send(deps: &Deps, alert: &Alert, delivery: &Delivery) -> Outcome {
    match delivery.channel.as_str() {
        "push" => {
            let Some(platform) = delivery.platform else {
                return Outcome::Gone("push endpoint removed".to_owned());
            };
            let sent = deps
                .sns
                .publish()
                .target_arn(&delivery.target)
                .message_structure("json")
                .message(alert::push_message(alert, platform))
                .send()
                .await;
            match sent {
                Ok(_) => Outcome::Delivered,
                Err(err) => match err.as_service_error() {
                    Some(e) if e.is_endpoint_disabled_exception() || e.is_not_found_exception() => {
                        Outcome::Gone(format!(
                            "push endpoint: {}",
                            e.meta().code().unwrap_or("gone")
                        ))
                    }
                    _ => Outcome::Failed(WorkerError::retryable(
                        anyhow::Error::new(err).context("SNS publish to a push endpoint"),
                    )),
                },
            }
        }
        _ => {
            let sent = deps
                .web
                .post_to_connection()
                .connection_id(&delivery.target)
                .data(Blob::new(alert::web_message(alert)))
                .send()
                .await;
            match sent {
                Ok(_) => Outcome::Delivered,
                // API Gateway answers 410 GoneException for a connection that closed.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_gone_exception())
                        || err
                            .raw_response()
                            .is_some_and(|r| r.status().as_u16() == 410) =>
                {
                    Outcome::Gone("WebSocket connection gone (410)".to_owned())
                }
                Err(err) => Outcome::Failed(WorkerError::retryable(
                    anyhow::Error::new(err).context("post to a WebSocket connection"),
                )),
            }
        }
    }
}

/// Records the outcomes under `claim`, removes gone endpoints and connections, and answers the
/// first transient failure, if any.
async fn settle(
    deps: &Deps,
    outcomes: &[(&Delivery, Outcome)],
    claim: DateTime<Utc>,
    done: &mut Delivered,
) -> Result<Option<WorkerError>, WorkerError> {
    let mut columns: [Vec<String>; 5] = Default::default();
    let mut alert_ids = Vec::with_capacity(outcomes.len());
    let mut gone_endpoints = Vec::new();
    let mut gone_connections = Vec::new();
    let mut failure = None;
    for (delivery, outcome) in outcomes {
        let (state, error) = match outcome {
            Outcome::Delivered => {
                done.delivered += 1;
                ("delivered", String::new())
            }
            Outcome::Gone(reason) => {
                done.gone += 1;
                match delivery.channel.as_str() {
                    "push" => gone_endpoints.push(delivery.target.clone()),
                    _ => gone_connections.push(delivery.target.clone()),
                }
                ("gone", reason.clone())
            }
            Outcome::Undeliverable(reason) => {
                tracing::warn!(alert_id = delivery.alert_id, channel = %delivery.channel, %reason, "delivery refused; not retried");
                ("failed", reason.clone())
            }
            Outcome::Failed(err) => {
                let reason = domain::text::storable(&err.to_string());
                tracing::warn!(alert_id = delivery.alert_id, channel = %delivery.channel, error = %reason, "delivery failed; retried");
                if failure.is_none() {
                    failure = Some(WorkerError::retryable(anyhow::anyhow!("{reason}")));
                }
                ("pending", reason)
            }
        };
        alert_ids.push(delivery.alert_id);
        for (column, value) in columns.iter_mut().zip([
            delivery.user_id.as_str(),
            delivery.channel.as_str(),
            delivery.target.as_str(),
            state,
            error.as_str(),
        ]) {
            column.push(value.to_owned());
        }
    }
    let [users, channels, targets, states, errors] = &columns;
    let errors: Vec<Option<&str>> = errors
        .iter()
        .map(|e| Some(e.as_str()).filter(|e| !e.is_empty()))
        .collect();
    let mut tx = deps.db.begin().await.map_err(db::classify)?;
    sqlx::query_file!(
        "sql/settle_deliveries.sql",
        &alert_ids,
        users,
        channels,
        targets,
        states,
        claim,
        &errors as &[Option<&str>],
    )
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    sqlx::query_file!("sql/remove_push_endpoints.sql", &gone_endpoints)
        .execute(&mut *tx)
        .await
        .map_err(db::classify)?;
    sqlx::query_file!(
        "sql/remove_connections.sql",
        &gone_connections,
        NEW_CONNECTION.as_secs_f64()
    )
    .execute(&mut *tx)
    .await
    .map_err(db::classify)?;
    tx.commit().await.map_err(db::classify)?;
    Ok(failure)
}

/// Sets each still-delivering pair's status from its deliveries (`domain::alert::status`).
async fn update_statuses(
    deps: &Deps,
    alert_ids: &[i64],
    user_ids: &[&str],
) -> Result<(), WorkerError> {
    let rows = sqlx::query_file!("sql/delivery_states.sql", alert_ids, user_ids as &[&str])
        .fetch_all(&deps.db)
        .await
        .map_err(db::classify)?;
    let mut states: HashMap<(i64, String), Vec<DeliveryState>> = HashMap::new();
    for row in rows {
        let entry = states.entry((row.alert_id, row.user_id)).or_default();
        match row.state.as_deref() {
            Some("delivered") => entry.push(DeliveryState::Delivered),
            Some("gone") => entry.push(DeliveryState::Gone),
            Some("failed") => entry.push(DeliveryState::Failed),
            Some(_) => entry.push(DeliveryState::Pending),
            None => {}
        }
    }
    let (mut ids, mut users, mut statuses) = (Vec::new(), Vec::new(), Vec::new());
    for ((alert_id, user_id), deliveries) in states {
        let status = alert::status(&deliveries);
        if status != "delivering" {
            ids.push(alert_id);
            users.push(user_id);
            statuses.push(status);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query_file!("sql/set_statuses.sql", &ids, &users, &statuses as &[&str])
        .execute(&deps.db)
        .await
        .map_err(db::classify)?;
    Ok(())
}
