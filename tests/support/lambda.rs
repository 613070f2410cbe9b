//! A Lambda invoke endpoint in the test process: `POST /2015-03-31/functions/<name>/invocations`
//! answered by an async handler, so a local event source can drive a function's real code.
//! (wiremock answers synchronously; a handler that writes to the database needs an await.)

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
                    Ok(body) => match serde_json::from_slice(&body) {
                        Ok(event) => (200, handler(event).await),
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

/// Reads one HTTP request's body (the invoke API sends a Content-Length).
async fn read_body(socket: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
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
            return Ok(buf[end + 4..end + 4 + length].to_vec());
        }
    }
}
