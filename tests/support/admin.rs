//! The admin API's fixture: the CDP fixture's database, queue and topic, a Lambda invoke
//! endpoint of the test's own that runs the daily rollup for real (so an execution's run is
//! recorded as in production), and requests as API Gateway hands them to the function, with
//! the authorizer's claims of a caller of some scope.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Request, StatusCode};
use lambda_http::request::RequestContext;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::{Cdp, env_or, invoke_endpoint, unique};

/// What a request answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn replayed(&self) -> bool {
        self.headers.contains_key(admin_api::idempotency::REPLAYED)
    }
}

pub struct AdminApi {
    pub cdp: Cdp,
    /// The payloads the jobs were invoked with, by function.
    pub invoked: Arc<Mutex<Vec<(String, Value)>>>,
    pub lambda_url: String,
    pub deps: Arc<admin_api::Deps>,
}

impl AdminApi {
    pub async fn new() -> anyhow::Result<Self> {
        let cdp = Cdp::new().await?;
        let invoked: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let rollup = Arc::new(daily_rollup::Deps {
            reporter: cdp.orchestrator().reporter,
        });
        let lambda_url = invoke_endpoint({
            let invoked = invoked.clone();
            move |payload: Value| {
                let (invoked, rollup) = (invoked.clone(), rollup.clone());
                async move {
                    if let Ok(mut invoked) = invoked.lock() {
                        invoked.push(("daily-rollup".to_owned(), payload.clone()));
                    }
                    match daily_rollup::handle(payload, &rollup).await {
                        Ok(summary) => summary,
                        Err(err) => {
                            json!({"errorType": err.kind(), "errorMessage": err.to_string()})
                        }
                    }
                }
            }
        })
        .await?;
        let deps = Arc::new(Self::deps_with(&cdp, &lambda_url, cdp.db.pool.clone())?);
        Ok(Self {
            cdp,
            invoked,
            lambda_url,
            deps,
        })
    }

    /// The function's dependencies on `pool`, invoking jobs at `lambda_url`.
    pub fn deps_with(
        cdp: &Cdp,
        lambda_url: &str,
        pool: sqlx::PgPool,
    ) -> anyhow::Result<admin_api::Deps> {
        let redis = adapters::redis::connect_lazy(&adapters::config::RedisConfig {
            url: env_or("REDIS_URL", "redis://127.0.0.1:6379").into(),
            connect_timeout: std::time::Duration::from_secs(1),
            response_timeout: std::time::Duration::from_secs(1),
            retries: 0,
        })?;
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(&cdp.aws.sdk)
                .endpoint_url(lambda_url)
                .build(),
        );
        let functions = domain::admin::JOBS
            .iter()
            .map(|job| (job.function, job.function.to_owned()))
            .collect();
        Ok(admin_api::Deps {
            db: pool.clone(),
            backfill: cdp.backfill(pool.clone()),
            lambda,
            functions,
            probes: admin_api::health::Probes {
                db: pool,
                redis,
                brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
                sqs: cdp.aws.sqs.clone(),
                queue_url: cdp.aws.queue_url("cdp-jobs").to_owned(),
            },
        })
    }

    /// `method path` as a caller with `scope` (`None`: no verified claims reached the function),
    /// with `body` (JSON) and an `Idempotency-Key` if given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        scope: Option<&str>,
        body: Option<&str>,
        key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        admin_call(self.deps.clone(), method, path, scope, body, key).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.call("GET", path, Some("ops:read"), None, None).await
    }

    /// A change as an admin, under a fresh key.
    pub async fn change(&self, path: &str, body: Option<&str>) -> anyhow::Result<Answer> {
        let key = unique("key-");
        self.call("POST", path, Some("ops:admin"), body, Some(&key))
            .await
    }
}

/// A request to the router of `deps`, as [`AdminApi::call`] describes.
pub async fn admin_call(
    deps: Arc<admin_api::Deps>,
    method: &str,
    path: &str,
    scope: Option<&str>,
    body: Option<&str>,
    key: Option<&str>,
) -> anyhow::Result<Answer> {
    let uri = format!("/v1/admin{path}");
    let mut context = json!({
        "requestId": unique("req-"),
        "http": { "method": method, "path": uri, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
        "stage": "v1",
    });
    if let Some(scope) = scope {
        let subject = format!("ops-{}", scope.replace(':', "-"));
        context["authorizer"] = json!({ "jwt": { "claims": { "sub": subject, "scope": scope } } });
    }
    let mut request =
        Request::builder()
            .method(method)
            .uri(&uri)
            .extension(RequestContext::ApiGatewayV2(serde_json::from_value(
                context,
            )?));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(lambda_http::Body::from(body.unwrap_or_default().to_owned()))?;
    let response = admin_api::router(deps).oneshot(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 8 << 20).await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        body,
    })
}
