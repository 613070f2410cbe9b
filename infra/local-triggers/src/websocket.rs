//! An API Gateway WebSocket API, run locally: clients connect to `ws://…/?token=…`, the
//! `$connect` route's REQUEST authorizer and the `$connect`/`$disconnect` routes are invoked on
//! the function as API Gateway would, and the management endpoint (`POST` and `DELETE
//! /@connections/{id}`) posts to live connections or answers `410 GoneException` for the rest,
//! as API Gateway does for a connection that closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::invoke::{Invocation, Invoker};

/// The stand-in's state: the function behind the routes and the live connections.
#[derive(Clone)]
pub struct Gateway {
    invoker: Invoker,
    function: String,
    api_id: String,
    stage: String,
    connections: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<String>>>>,
}

impl Gateway {
    pub fn new(invoker: Invoker, function: &str) -> Self {
        Self {
            invoker,
            function: function.to_owned(),
            api_id: "localws".to_owned(),
            stage: "v1".to_owned(),
            connections: Arc::default(),
        }
    }

    /// The routes: the WebSocket endpoint and the management endpoint.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(connect))
            .route("/@connections/{id}", post(post_to).delete(close))
            .with_state(self)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<String>>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn context(&self, route: &str, connection: &str) -> Value {
        json!({
            "routeKey": route,
            "eventType": if route == "$connect" { "CONNECT" } else { "DISCONNECT" },
            "connectionId": connection,
            "apiId": self.api_id,
            "stage": self.stage,
            "requestId": uuid::Uuid::new_v4().to_string(),
            "domainName": "127.0.0.1",
            "identity": { "sourceIp": "127.0.0.1" },
        })
    }

    /// The authorizer's answer: the principal when it allowed the connection.
    async fn authorize(&self, connection: &str, query: &HashMap<String, String>) -> Option<String> {
        let event = json!({
            "type": "REQUEST",
            "methodArn": format!("arn:aws:execute-api:local:000000000000:{}/{}/$connect", self.api_id, self.stage),
            "headers": {},
            "queryStringParameters": query,
            "requestContext": self.context("$connect", connection),
        });
        match self.invoker.invoke(&self.function, &event).await.0 {
            Invocation::Returned(answer) => {
                let effect = &answer["policyDocument"]["Statement"][0]["Effect"];
                (effect == "Allow").then(|| {
                    answer["principalId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
            }
            other => {
                eprintln!("websocket: the authorizer failed: {other:?}");
                None
            }
        }
    }

    async fn route(&self, route: &str, connection: &str, principal: Option<&str>) -> bool {
        let mut context = self.context(route, connection);
        if let Some(principal) = principal {
            context["authorizer"] = json!({ "principalId": principal, "userId": principal });
        }
        let event = json!({ "headers": {}, "requestContext": context, "isBase64Encoded": false });
        match self.invoker.invoke(&self.function, &event).await.0 {
            Invocation::Returned(answer) => answer["statusCode"].as_u64().unwrap_or(200) < 300,
            other => {
                eprintln!("websocket: {route} failed: {other:?}");
                false
            }
        }
    }
}

/// A connection id in API Gateway's shape (16 characters).
fn connection_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

async fn connect(
    State(gateway): State<Gateway>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let connection = connection_id();
    let Some(principal) = gateway.authorize(&connection, &query).await else {
        return StatusCode::FORBIDDEN.into_response();
    };
    if !gateway
        .route("$connect", &connection, Some(&principal))
        .await
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    println!("websocket: {connection} connected as {principal}");
    upgrade.on_upgrade(move |socket| hold(gateway, connection, socket))
}

/// Forwards posted frames to the client until either side closes, then `$disconnect`.
async fn hold(gateway: Gateway, connection: String, socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    gateway.live().insert(connection.clone(), tx);
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(text) => if sink.send(Message::Text(text.into())).await.is_err() { break },
                None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    gateway.live().remove(&connection);
    gateway.route("$disconnect", &connection, None).await;
    println!("websocket: {connection} disconnected");
}

fn gone() -> Response {
    (
        StatusCode::GONE,
        [("x-amzn-ErrorType", "GoneException")],
        r#"{"message":"Gone"}"#,
    )
        .into_response()
}

async fn post_to(State(gateway): State<Gateway>, Path(id): Path<String>, body: Bytes) -> Response {
    let sender = gateway.live().get(&id).cloned();
    match sender {
        Some(sender)
            if sender
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_ok() =>
        {
            println!("websocket: posted {} bytes to {id}", body.len());
            StatusCode::OK.into_response()
        }
        _ => gone(),
    }
}

async fn close(State(gateway): State<Gateway>, Path(id): Path<String>) -> Response {
    match gateway.live().remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => gone(),
    }
}

/// A client: connects to `url`, prints every text frame it receives, for `duration` at most.
pub async fn listen(url: &str, duration: std::time::Duration) -> anyhow::Result<usize> {
    let (socket, _) = tokio_tungstenite::connect_async(url).await?;
    let (_, mut frames) = socket.split();
    let mut received = 0;
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            frame = frames.next() => match frame {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    received += 1;
                    println!("{text}");
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => break,
            },
        }
    }
    Ok(received)
}
