//! A Lambda invoke endpoint in the test process: `POST /2015-03-31/functions/<name>/invocations`
//! answered by an async handler, so a local event source can drive a function's real code.
//! (wiremock answers synchronously; a handler that writes to the database needs an await.)
//! Each invocation runs with the deadline Lambda would give it: the named function's timeout in
//! the template, as the local stack's provisioning wrote it (`LOCAL_FUNCTION_TIMEOUTS` in
//! `.stack/functions.env`), so retries within an invocation run as they do in Lambda.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Serves `handler` on 127.0.0.1; returns the base URL. Every function name reaches it.
pub async fn invoke_endpoint<F, Fut>(handler: F) -> anyhow::Result<String>
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Value> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let (status, body) = match read_body(&mut socket).await {
                    Ok((function, body)) => match serde_json::from_slice(&body) {
                        Ok(event) => {
                            let deadline = std::time::Instant::now() + timeout_of(&function);
                            let answer =
                                adapters::telemetry::with_deadline(deadline, handler(event));
                            (200, answer.await)
                        }
                        Err(err) => (400, serde_json::json!({"errorMessage": err.to_string()})),
                    },
                    Err(err) => (400, serde_json::json!({"errorMessage": err.to_string()})),
                };
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(base)
}

/// What the Lambda invoke API answers for `event` run through `handler`: its result, or the
/// error a function reports (`errorType`, `errorMessage`), an event it cannot read included.
pub async fn invocation_answer<E, S, F, Fut>(event: Value, handler: F) -> Value
where
    E: serde::de::DeserializeOwned,
    S: serde::Serialize,
    F: FnOnce(E) -> Fut,
    Fut: Future<Output = Result<S, domain::WorkerError>>,
{
    match serde_json::from_value(event) {
        Ok(event) => match handler(event).await {
            Ok(summary) => serde_json::json!(summary),
            Err(err) => {
                serde_json::json!({"errorType": err.kind(), "errorMessage": err.to_string()})
            }
        },
        Err(err) => {
            serde_json::json!({"errorType": "InvalidEvent", "errorMessage": err.to_string()})
        }
    }
}

/// `function`'s timeout in the template (the local stack's `LOCAL_FUNCTION_TIMEOUTS`); the
/// template's global 60 s for a name it does not list.
fn timeout_of(function: &str) -> std::time::Duration {
    // The list, read from the stack's env file once per test process.
    static TIMEOUTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::fs::read_to_string(crate::repo_root().join(".stack/functions.env"))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("LOCAL_FUNCTION_TIMEOUTS="))
            .map(|list| list.trim_matches('"').to_owned())
            .unwrap_or_default()
    });
    adapters::telemetry::timeout_of(&TIMEOUTS, function)
        .unwrap_or(std::time::Duration::from_secs(60))
}

/// Reads one HTTP request: the function it names and its body (the invoke API sends a
/// Content-Length).
async fn read_body(socket: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 64 * 1024];
    loop {
        let n = socket.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            let function = head
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.strip_prefix("/2015-03-31/functions/"))
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default()
                .to_owned();
            return Ok((function, buf[end + 4..end + 4 + length].to_vec()));
        }
    }
}
