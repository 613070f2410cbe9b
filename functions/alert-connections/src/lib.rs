//! alert-connections: the alerts WebSocket API's function (SPEC §2, the serverless stand-in for
//! seed 004's SSE). Three events reach it:
//!
//! - the `$connect` route's **REQUEST authorizer**: WebSocket APIs have no JWT authorizer, so
//!   this function verifies the platform's token (`?token=`, the authorizer's identity source:
//!   API Gateway answers 401 without it; `Authorization: Bearer` is read too) as the
//!   HTTP API's authorizer would (`adapters::jwt`) and allows the connection for its subject,
//!   or denies it (API Gateway answers 403);
//! - **`$connect`**, authorized: the connection is kept as one of the user's live connections;
//! - **`$disconnect`**: it is forgotten.
//!
//! user-alert-delivery posts to the connections kept here and removes the ones API Gateway
//! reports gone. Both routes are idempotent: a repeated `$connect` keeps one row, a repeated
//! `$disconnect` changes nothing.

use std::collections::HashMap;

use adapters::bootstrap::ApiFunction;
use adapters::jwt::{self, IssuerKeys};
use adapters::{config, db};
use domain::WorkerError;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

/// alert-connections' own settings: the token issuer's JWKS, issuer and audience.
#[derive(Deserialize)]
struct Settings {
    jwt_jwks_url: String,
    jwt_issuer: String,
    jwt_audience: String,
}

pub struct Deps {
    pub db: PgPool,
    /// The issuer's keys, fetched again when the issuer rotates them.
    pub verifier: IssuerKeys,
}

impl Deps {
    /// `JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE` and `DATABASE_*`.
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings: Settings = config::from_env()?;
        Ok(Self {
            db: ApiFunction::from_env().await?.db,
            verifier: IssuerKeys::fetch(
                &settings.jwt_jwks_url,
                &settings.jwt_issuer,
                &settings.jwt_audience,
            )
            .await?,
        })
    }
}

/// The authorizer's request (the fields this function reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authorize {
    method_arn: String,
    #[serde(default)]
    query_string_parameters: Option<HashMap<String, String>>,
    #[serde(default)]
    headers: Option<HashMap<String, String>>,
}

/// A route's request (the fields this function reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Route {
    request_context: RouteContext,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteContext {
    route_key: String,
    connection_id: String,
    #[serde(default)]
    authorizer: Option<HashMap<String, Value>>,
}

/// Handles one event: an authorizer request (it has a `methodArn`) or a route.
pub async fn handle(event: Value, deps: &Deps) -> Result<Value, WorkerError> {
    if event.get("methodArn").is_some() {
        let request: Authorize = serde_json::from_value(event)?;
        return authorize(&request, &deps.verifier).await;
    }
    let route: Route = serde_json::from_value(event)?;
    let context = route.request_context;
    match context.route_key.as_str() {
        "$connect" => {
            let user = context
                .authorizer
                .as_ref()
                .and_then(|a| a.get("userId").or_else(|| a.get("principalId")))
                .and_then(Value::as_str)
                .filter(|user| !user.is_empty());
            let Some(user) = user else {
                // Only reachable if the route was deployed without its authorizer: stay closed.
                tracing::warn!(connection = %context.connection_id, "connect without an authorized user refused");
                return Ok(json!({ "statusCode": 401 }));
            };
            sqlx::query_file!("sql/connect.sql", context.connection_id, user)
                .execute(&deps.db)
                .await
                .map_err(db::classify)?;
            tracing::info!(connection = %context.connection_id, user, "connected");
        }
        "$disconnect" => {
            sqlx::query_file!("sql/disconnect.sql", context.connection_id)
                .execute(&deps.db)
                .await
                .map_err(db::classify)?;
            tracing::info!(connection = %context.connection_id, "disconnected");
        }
        other => {
            return Err(WorkerError::inconsistent(format_args!(
                "route {other} is not one of this function's"
            )));
        }
    }
    Ok(json!({ "statusCode": 200 }))
}

/// Allows the connection for the token's subject, or denies it (API Gateway answers 403).
async fn authorize(request: &Authorize, verifier: &IssuerKeys) -> Result<Value, WorkerError> {
    let token = request
        .query_string_parameters
        .as_ref()
        .and_then(|q| q.get("token"))
        .map(String::as_str)
        .or_else(|| {
            request
                .headers
                .as_ref()
                .and_then(|h| {
                    h.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                })
                .and_then(|(_, v)| jwt::bearer(v))
        })
        .unwrap_or_default();
    let (principal, effect) = match verifier.verify(token).await {
        Ok(claims) => (claims.sub, "Allow"),
        Err(refused) => {
            tracing::warn!(reason = %refused, "WebSocket connection denied");
            (String::new(), "Deny")
        }
    };
    Ok(json!({
        "principalId": if principal.is_empty() { "anonymous" } else { principal.as_str() },
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": effect,
                "Resource": request.method_arn,
            }],
        },
        "context": { "userId": principal },
    }))
}
