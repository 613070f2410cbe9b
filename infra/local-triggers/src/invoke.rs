//! The Lambda invoke API of `cargo lambda watch` (or anything that speaks it).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

/// Invokes functions at one address.
#[derive(Debug, Clone)]
pub struct Invoker {
    http: reqwest::Client,
    base: String,
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The function returned this.
    Returned(Value),
    /// The function failed: `{"errorType", "errorMessage"}`, or the runtime's own error.
    Failed(String),
    /// The invoke API could not be reached (for Scheduler, a delivery that did not happen).
    Unreachable(String),
}

impl Invocation {
    /// Whether the records were not taken, whatever the reason.
    pub fn failed(&self) -> bool {
        !matches!(self, Self::Returned(_))
    }
}

impl Invoker {
    /// `base` is e.g. `http://127.0.0.1:9000`. An invocation may last 15 minutes, Lambda's
    /// longest.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(900))
                .build()
                .context("build the HTTP client")?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Invokes `function` synchronously with `payload`; returns how it ended and how long it
    /// took.
    pub async fn invoke(&self, function: &str, payload: &Value) -> (Invocation, Duration) {
        let started = Instant::now();
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.base);
        let response = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload.to_string())
            .send()
            .await;
        let outcome = match response {
            // Not connected: nothing ran. Anything else (a timeout above all) may have run.
            Err(err) if err.is_connect() => Invocation::Unreachable(format!("{url}: {err}")),
            Err(err) => Invocation::Failed(format!("{url}: {err}")),
            Ok(response) => {
                let status = response.status();
                let function_error = response.headers().contains_key("x-amz-function-error");
                let body = match response.text().await {
                    Ok(body) => body,
                    Err(err) => {
                        let failed = format!("{url}: the answer could not be read: {err}");
                        return (Invocation::Failed(failed), started.elapsed());
                    }
                };
                let returned: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if !status.is_success() || function_error || returned.get("errorType").is_some() {
                    Invocation::Failed(format!("{status}: {body}"))
                } else {
                    Invocation::Returned(returned)
                }
            }
        };
        (outcome, started.elapsed())
    }
}
