//! Alerts end to end against the real stack: alert-intake's router with the authorizer's
//! claims, the outbox to a real topic, alert-fanout and user-alert-delivery on MSK events built
//! from what the broker holds, push endpoints in the local SNS and a WebSocket management
//! endpoint that can say a connection is gone.

use std::sync::Arc;
use std::time::Duration;

use adapters::kafka::{KafkaBatchSummary, OnFailure, Producer, Retry};
use adapters::outbox::Outbox;
use alert_intake::Accepted;
use axum::http::{Request, StatusCode};
use domain::alert::AlertRequest;
use integration_tests::{
    ConnectionsApi, LOCAL_AUDIENCE, LOCAL_ISSUER, TcpProxy, TestAws, TestDb, create_topics,
    dead_letters, disable_endpoint, invoke_endpoint, kafka_brokers, kafka_event, local_jwks,
    push_endpoint, read_topic, repo_root, token, unique,
};
use lambda_http::request::RequestContext;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt as _;

const NOW_MS: i64 = 1_795_136_400_000;

struct World {
    db: TestDb,
    aws: TestAws,
    created_topic: String,
    user_topic: String,
    dlq: String,
    ws: ConnectionsApi,
}

impl World {
    async fn new(gone: &[&str], failing: &[&str]) -> anyhow::Result<Self> {
        let db = TestDb::new().await?;
        let aws = TestAws::new().await?;
        let created_topic = unique("t-alert-created-");
        let user_topic = unique("t-user-alert-");
        let dlq = unique("t-alert-dlq-");
        create_topics(&[&created_topic, &user_topic, &dlq]).await?;
        Ok(Self {
            db,
            aws,
            created_topic,
            user_topic,
            dlq,
            ws: ConnectionsApi::start(gone, failing).await,
        })
    }

    fn intake_on(&self, db: PgPool) -> anyhow::Result<alert_intake::Deps> {
        Ok(alert_intake::Deps {
            outbox: Outbox::to_kafka(
                db.clone(),
                Producer::plaintext(&kafka_brokers())?,
                alert_intake::PRODUCER,
                &self.created_topic,
            ),
            db,
            dedupe_window: Duration::from_secs(3600),
        })
    }

    fn intake(&self) -> anyhow::Result<alert_intake::Deps> {
        self.intake_on(self.db.pool.clone())
    }

    fn fanout_on(&self, db: PgPool, retry: Retry) -> anyhow::Result<alert_fanout::Deps> {
        Ok(alert_fanout::Deps {
            producer: Producer::plaintext(&kafka_brokers())?,
            topic: self.user_topic.clone(),
            dead_letters: dead_letters(&db, alert_fanout::CONSUMER)?.to_topic(&self.dlq),
            db,
            on_failure: OnFailure::RetryThenDeadLetter(retry),
        })
    }

    fn fanout(&self) -> anyhow::Result<alert_fanout::Deps> {
        self.fanout_on(self.db.pool.clone(), Retry::seed())
    }

    fn delivery_with(&self, retry: Retry) -> anyhow::Result<user_alert_delivery::Deps> {
        let db = self.db.pool.clone();
        Ok(user_alert_delivery::Deps {
            sns: adapters::aws::sns(&self.aws.sdk),
            web: user_alert_delivery::connections_client(&self.aws.sdk, &self.ws.uri()),
            concurrency: 8,
            dead_letters: dead_letters(&db, user_alert_delivery::CONSUMER)?.to_topic(&self.dlq),
            db,
            on_failure: OnFailure::RetryThenDeadLetter(retry),
        })
    }

    fn delivery(&self) -> anyhow::Result<user_alert_delivery::Deps> {
        self.delivery_with(Retry::seed())
    }

    async fn user(&self, id: &str, subscriptions: &[(&str, &str)]) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO alert_users (user_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        for (app, kind) in subscriptions {
            sqlx::query(
                "INSERT INTO alert_subscriptions (user_id, app_name, alert_kind) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(app)
            .bind(kind)
            .execute(&self.db.pool)
            .await?;
        }
        Ok(())
    }

    async fn push(&self, user: &str) -> anyhow::Result<String> {
        let arn = push_endpoint(&adapters::aws::sns(&self.aws.sdk), &unique("device-")).await?;
        sqlx::query(
            "INSERT INTO push_endpoints (endpoint_arn, user_id, platform) VALUES ($1, $2, 'FCM')",
        )
        .bind(&arn)
        .bind(user)
        .execute(&self.db.pool)
        .await?;
        Ok(arn)
    }

    async fn connection(&self, user: &str, id: &str) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO ws_connections (connection_id, user_id) VALUES ($1, $2)")
            .bind(id)
            .bind(user)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// POSTs an alert as `subject` through the router; the status and the body.
    async fn post(&self, subject: Option<&str>, body: &str) -> anyhow::Result<(StatusCode, Value)> {
        post(Arc::new(self.intake()?), subject, body).await
    }

    /// The records on `topic`, as the MSK event the event source would deliver (one partition).
    async fn event_from(
        &self,
        topic: &str,
        expected: usize,
    ) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
        let records = read_topic(topic, expected, Duration::from_secs(20)).await?;
        let values: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        kafka_event(topic, 0, NOW_MS, &values)
    }

    async fn statuses(&self) -> anyhow::Result<Vec<(i64, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT alert_id, user_id, status FROM user_alert_statuses ORDER BY alert_id, user_id",
        )
        .fetch_all(&self.db.pool)
        .await?)
    }

    async fn deliveries(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT user_id, channel, state FROM user_alert_deliveries ORDER BY user_id, channel, target",
        )
        .fetch_all(&self.db.pool)
        .await?)
    }
}

async fn post(
    deps: Arc<alert_intake::Deps>,
    subject: Option<&str>,
    body: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut context = json!({
        "requestId": unique("req-"),
        "http": { "method": "POST", "path": "/v1/alerts", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
        "stage": "v1",
    });
    if let Some(subject) = subject {
        context["authorizer"] = json!({ "jwt": { "claims": { "sub": subject } } });
    }
    let request = Request::builder()
        .method("POST")
        .uri("/v1/alerts")
        .header("content-type", "application/json")
        .extension(RequestContext::ApiGatewayV2(serde_json::from_value(
            context,
        )?))
        .body(lambda_http::Body::from(body.to_owned()))?;
    let response = alert_intake::router(deps).oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

fn alert_body(app: &str, kind: &str, dedupe_key: Option<&str>) -> String {
    let mut body = json!({
        "alert_kind": kind, "app_name": app, "title": "Deployed v2",
        "body": "Rolled out.", "severity": "info",
    });
    if let Some(key) = dedupe_key {
        body["dedupe_key"] = json!(key);
    }
    body.to_string()
}

fn applied(summary: &KafkaBatchSummary) -> (usize, usize, usize) {
    (summary.records, summary.applied, summary.rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_reaches_each_subscriber_once_on_push_and_web() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    w.user("ana", &[("bank-api", "DEPLOYMENT")]).await?;
    w.user("bo", &[("bank-api", "*")]).await?;
    w.user("cy", &[("bank-api", "ERROR")]).await?; // another kind
    w.user("di", &[("shop-api", "*")]).await?; // another app
    w.user("ed", &[("bank-api", "*")]).await?; // no channel
    let ana_push = w.push("ana").await?;
    w.connection("ana", "conn-ana").await?;
    w.connection("bo", "conn-bo").await?;

    let (status, body) = w
        .post(Some("ops-1"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let accepted: Accepted = serde_json::from_value(body)?;
    assert!(!accepted.duplicate);

    let created = w.event_from(&w.created_topic, 1).await?;
    let summary = alert_fanout::handle(created, &w.fanout()?).await?;
    assert_eq!(applied(&summary), (1, 1, 0));

    let user_alerts = w.event_from(&w.user_topic, 3).await?;
    let summary = user_alert_delivery::handle(user_alerts, &w.delivery()?).await?;
    assert_eq!(applied(&summary), (3, 3, 0));

    let id = accepted.id;
    assert_eq!(
        w.statuses().await?,
        vec![
            (id, "ana".into(), "delivered".into()),
            (id, "bo".into(), "delivered".into()),
            (id, "ed".into(), "stored".into()),
        ]
    );
    assert_eq!(
        w.deliveries().await?,
        vec![
            ("ana".into(), "push".into(), "delivered".into()),
            ("ana".into(), "web".into(), "delivered".into()),
            ("bo".into(), "web".into(), "delivered".into()),
        ]
    );
    let frames = w.ws.received("conn-ana").await;
    assert_eq!(frames.len(), 1);
    let frame: Value = serde_json::from_str(&frames[0])?;
    assert_eq!(frame["alert"]["id"], id);
    assert_eq!(frame["alert"]["appName"], "bank-api");
    assert_eq!(w.ws.received("conn-bo").await.len(), 1);
    let endpoint: i64 =
        sqlx::query_scalar("SELECT count(*) FROM push_endpoints WHERE endpoint_arn = $1")
            .bind(&ana_push)
            .fetch_one(&w.db.pool)
            .await?;
    assert_eq!(endpoint, 1, "a delivered endpoint stays");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_batches_make_one_status_and_one_delivery_per_channel() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    for user in ["u1", "u2", "u3"] {
        w.user(user, &[("bank-api", "*")]).await?;
        w.connection(user, &format!("conn-{user}")).await?;
    }
    w.push("u1").await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;

    // alert-created: twice one after another, then twice at once.
    let created = w.event_from(&w.created_topic, 1).await?;
    let fanout = w.fanout()?;
    alert_fanout::handle(created.clone(), &fanout).await?;
    alert_fanout::handle(created.clone(), &fanout).await?;
    let (a, b) = tokio::join!(
        alert_fanout::handle(created.clone(), &fanout),
        alert_fanout::handle(created, &fanout)
    );
    a?;
    b?;
    let published = read_topic(&w.user_topic, 10, Duration::from_secs(3)).await?;
    assert_eq!(published.len(), 3, "a replayed alert publishes nothing");

    // user-alert: twice, then twice at once.
    let user_alerts = w.event_from(&w.user_topic, 3).await?;
    let delivery = w.delivery()?;
    user_alert_delivery::handle(user_alerts.clone(), &delivery).await?;
    let again = user_alert_delivery::handle(user_alerts.clone(), &delivery).await?;
    assert_eq!(again.applied, 0, "no status twice");
    let (a, b) = tokio::join!(
        user_alert_delivery::handle(user_alerts.clone(), &delivery),
        user_alert_delivery::handle(user_alerts, &delivery)
    );
    assert_eq!(a?.applied + b?.applied, 0);
    assert_eq!(w.statuses().await?.len(), 3);
    assert_eq!(w.deliveries().await?.len(), 4);
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            w.ws.received(&format!("conn-{user}")).await.len(),
            1,
            "{user}"
        );
    }

    // A fresh pair of the same alert delivered to two invocations at once, both new to them.
    w.user("u4", &[("bank-api", "*")]).await?;
    w.connection("u4", "conn-u4").await?;
    let id: i64 = sqlx::query_scalar("SELECT id FROM alerts")
        .fetch_one(&w.db.pool)
        .await?;
    let pair = kafka_event(
        &w.user_topic,
        100,
        NOW_MS,
        &[json!({"alertId": id, "userId": "u4"}).to_string()],
    )?;
    let (a, b) = tokio::join!(
        user_alert_delivery::handle(pair.clone(), &delivery),
        user_alert_delivery::handle(pair, &delivery)
    );
    // Whichever claimed the delivery sends it; the other waits for it to settle (its first
    // attempt finds it held) before confirming the batch.
    let (a, b) = (a?, b?);
    assert_eq!((a.exhausted, b.exhausted), (0, 0));
    assert_eq!(
        w.db.count("SELECT count(*) FROM user_alert_statuses WHERE user_id = 'u4'")
            .await?,
        1,
        "one status"
    );
    assert_eq!(w.ws.received("conn-u4").await.len(), 1, "one delivery");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_publish_publishes_once() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    let deps = w.intake()?;
    let caller = adapters::http::Caller {
        subject: "ops".into(),
        scopes: vec![],
        request_id: "r".into(),
    };
    let request: AlertRequest = serde_json::from_str(&alert_body("bank-api", "DEPLOYMENT", None))?;
    // Stored and committed; the process dies before its flush.
    let accepted = alert_intake::store(&deps, &caller, &request).await?;
    assert!(
        read_topic(&w.created_topic, 1, Duration::from_secs(2))
            .await?
            .is_empty()
    );
    // The next requests' flushes, two at once and one after, publish it once.
    tokio::join!(
        alert_intake::publish(&deps.outbox),
        alert_intake::publish(&deps.outbox)
    );
    alert_intake::publish(&deps.outbox).await;
    let records = read_topic(&w.created_topic, 5, Duration::from_secs(3)).await?;
    assert_eq!(records.len(), 1);
    let record: Value = serde_json::from_slice(&records[0].payload)?;
    assert_eq!(
        record,
        json!({"alertId": accepted.id, "alertKind": "DEPLOYMENT", "appName": "bank-api"})
    );
    assert_eq!(
        records[0].headers.get("dedup_key").map(String::as_str),
        Some(format!("alert-created:{}", accepted.id).as_str())
    );

    // In a quiet period the schedule's flush publishes what the last request left. Its event is
    // not an HTTP request: lambda_http passes it through as POST /events.
    let left = alert_intake::store(&deps, &caller, &request).await?;
    let flush = |context: RequestContext| {
        Request::builder()
            .method("POST")
            .uri("/events")
            .extension(context)
            .body(lambda_http::Body::from(r#"{"flush":"outbox"}"#))
    };
    let deps = Arc::new(deps);
    let answer = alert_intake::router(deps.clone())
        .oneshot(flush(RequestContext::PassThrough)?)
        .await?;
    assert_eq!(answer.status(), StatusCode::OK);
    let records = read_topic(&w.created_topic, 5, Duration::from_secs(3)).await?;
    assert_eq!(records.len(), 2);
    let record: Value = serde_json::from_slice(&records[1].payload)?;
    assert_eq!(record["alertId"], left.id);
    // Through API Gateway the path does not exist.
    let context = RequestContext::ApiGatewayV2(serde_json::from_value(json!({
        "requestId": "r",
        "http": { "method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
        "authorizer": { "jwt": { "claims": { "sub": "ops" } } },
    }))?);
    let answer = alert_intake::router(deps).oneshot(flush(context)?).await?;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    Ok(())
}

/// docs/functions/alert-intake.md: a broker that is down leaves the row for the next flush and
/// the answer is still 202, within the flush budget. Planted: a producer aimed at a port no
/// broker listens on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_still_gets_a_202_and_the_row_waits() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    let deps = alert_intake::Deps {
        outbox: Outbox::to_kafka(
            w.db.pool.clone(),
            Producer::plaintext("127.0.0.1:1")?,
            alert_intake::PRODUCER,
            &w.created_topic,
        ),
        db: w.db.pool.clone(),
        dedupe_window: Duration::from_secs(3600),
    };
    let (status, body) = post(
        Arc::new(deps),
        Some("ops"),
        &alert_body("bank-api", "DEPLOYMENT", None),
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        w.db.count(
            "SELECT count(*) FROM outbox WHERE producer = 'alert-intake' AND sent_at IS NULL"
        )
        .await?,
        1,
        "the row waits for the next flush"
    );
    // Its claim is the flush's that gave up; once the claim is 30 s old (CLAIM_TIMEOUT) the
    // next request's flush, with the broker back, publishes it.
    sqlx::query("UPDATE outbox SET claimed_at = claimed_at - interval '31 seconds'")
        .execute(&w.db.pool)
        .await?;
    w.post(Some("ops"), &alert_body("bank-api", "ERROR", None))
        .await?;
    assert_eq!(
        read_topic(&w.created_topic, 2, Duration::from_secs(10))
            .await?
            .len(),
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_key_makes_one_alert_even_at_once() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    let deps = Arc::new(w.intake()?);
    let body = alert_body("bank-api", "DEPLOYMENT", Some("deploy-42"));
    let (a, b) = tokio::join!(
        post(deps.clone(), Some("ops"), &body),
        post(deps.clone(), Some("ops"), &body)
    );
    let (a, b) = (a?, b?);
    assert_eq!((a.0, b.0), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(a.1["id"], b.1["id"]);
    let duplicates = [a.1["duplicate"].clone(), b.1["duplicate"].clone()];
    assert!(duplicates.contains(&json!(true)) && duplicates.contains(&json!(false)));
    let (_, again) = post(deps.clone(), Some("ops"), &body).await?;
    assert_eq!(
        (again["id"].clone(), again["duplicate"].clone()),
        (a.1["id"].clone(), json!(true))
    );
    // Another caller's key is its own.
    let (_, other) = post(deps.clone(), Some("someone-else"), &body).await?;
    assert_ne!(other["id"], a.1["id"]);
    assert_eq!(w.db.count("SELECT count(*) FROM alerts").await?, 2);
    assert_eq!(
        read_topic(&w.created_topic, 5, Duration::from_secs(3))
            .await?
            .len(),
        2
    );
    // The key names its alert for an hour: once its window has passed, the same key is a
    // new alert.
    sqlx::query(
        "UPDATE alert_dedupe_keys SET expires_at = now() - interval '1 second'
          WHERE created_by = 'ops'",
    )
    .execute(&w.db.pool)
    .await?;
    let (status, later) = post(deps, Some("ops"), &body).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(later["id"], a.1["id"]);
    assert_eq!(later["duplicate"], false);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_refuses_the_unauthenticated_and_bad_bodies_without_detail() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    let good = alert_body("bank-api", "DEPLOYMENT", None);
    let (status, body) = w.post(None, &good).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["status"], 401);
    let huge = json!({"alert_kind": "DEPLOYMENT", "app_name": "a", "title": "t",
                      "body": "x".repeat(70_000), "severity": "info"})
    .to_string();
    for (bad, expected) in [
        ("not json", StatusCode::UNPROCESSABLE_ENTITY),
        ("[1,2]", StatusCode::UNPROCESSABLE_ENTITY),
        (
            r#"{"alert_kind":"DEPLOYMENT"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            r#"{"alert_kind":"x y","app_name":"a","title":"t","body":"b","severity":"info"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            r#"{"alert_kind":"A","app_name":"'; DROP TABLE alerts;--","title":"t","body":"b","severity":"info"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            r#"{"alert_kind":"A","app_name":"a","title":"t","body":"b","severity":"info","admin":true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (huge.as_str(), StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let (status, body) = w.post(Some("ops"), bad).await?;
        assert_eq!(status, expected, "{bad:.60}");
        assert_eq!(body["status"], expected.as_u16());
    }
    // docs/functions/alert-intake.md: a title is one line (no control characters); a body may
    // break lines (`\n`, `\r\n`) and hold tabs.
    let with = |title: &str, text: &str| {
        json!({"alert_kind": "DEPLOYMENT", "app_name": "bank-api", "title": title,
               "body": text, "severity": "info"})
        .to_string()
    };
    for spoof in ["line one\nFAKE: all clear", "a\tb", "a\r\nb"] {
        let (status, _) = w.post(Some("ops"), &with(spoof, "ok")).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "title {spoof:?}");
    }
    assert_eq!(w.db.count("SELECT count(*) FROM alerts").await?, 0);
    let (status, _) = w
        .post(Some("ops"), &with("ok", "line one\r\nline two\tend"))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "a body with CRLF and a tab");
    sqlx::query("DELETE FROM outbox")
        .execute(&w.db.pool)
        .await?;
    sqlx::query("DELETE FROM alerts")
        .execute(&w.db.pool)
        .await?;
    // Another method on the path: 405, as problem JSON.
    let request = Request::builder()
        .method("GET")
        .uri("/v1/alerts")
        .extension(RequestContext::ApiGatewayV2(serde_json::from_value(json!({
            "requestId": unique("req-"), "stage": "v1",
            "http": { "method": "GET", "path": "/v1/alerts", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
            "authorizer": { "jwt": { "claims": { "sub": "ops" } } },
        }))?))
        .body(lambda_http::Body::Empty)?;
    let response = alert_intake::router(Arc::new(w.intake()?))
        .oneshot(request)
        .await?;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );

    // The database unreachable: 503 with nothing internal in it.
    let proxy = TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let cut_db = proxy.pool_for(&w.db);
    proxy.cut();
    let (status, body) = post(Arc::new(w.intake_on(cut_db)?), Some("ops"), &good).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body.get("detail"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_added_or_muted_between_alerts_are_honoured() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    w.user("ana", &[("bank-api", "*")]).await?;
    w.user("bo", &[("bank-api", "*")]).await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    let fanout = w.fanout()?;
    alert_fanout::handle(w.event_from(&w.created_topic, 1).await?, &fanout).await?;

    // Between the alerts: cy subscribes, bo mutes the subscription, ana mutes herself for an
    // hour.
    w.user("cy", &[("bank-api", "DEPLOYMENT")]).await?;
    sqlx::query("UPDATE alert_subscriptions SET muted = true WHERE user_id = 'bo'")
        .execute(&w.db.pool)
        .await?;
    sqlx::query(
        "UPDATE alert_users SET muted_until = now() + interval '1 hour' WHERE user_id = 'ana'",
    )
    .execute(&w.db.pool)
    .await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    let created = w.event_from(&w.created_topic, 2).await?;
    alert_fanout::handle(created, &fanout).await?;
    let records = read_topic(&w.user_topic, 10, Duration::from_secs(3)).await?;
    let mut pairs: Vec<(i64, String)> = records
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.payload).unwrap_or_default();
            (
                v["alertId"].as_i64().unwrap_or(0),
                v["userId"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    pairs.sort();
    let first = pairs[0].0;
    assert_eq!(
        pairs,
        vec![
            (first, "ana".into()),
            (first, "bo".into()),
            (first + 1, "cy".into()),
        ]
    );
    // Keyed by user id: one user's alerts stay on one partition, in order.
    for record in &records {
        let v: Value = serde_json::from_slice(&record.payload)?;
        assert_eq!(
            record.key.as_deref(),
            v["userId"].as_str().map(str::as_bytes),
            "{v}"
        );
    }
    Ok(())
}

/// docs/functions/alert-fanout.md: the alert's app and kind are read from `alerts`, not
/// trusted from the record; recipients are active users, not muted, with no matching
/// subscription muted (a mute wins). Planted: a forged record naming another app and kind, an
/// inactive subscriber, and a user whose kind subscription is live but whose `*` is muted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_come_from_the_stored_alert_and_a_mute_wins() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    w.user("ana", &[("bank-api", "DEPLOYMENT")]).await?; // the stored alert's subscriber
    w.user("sho", &[("shop-api", "ERROR")]).await?; // what the forged record names
    w.user("ina", &[("bank-api", "*")]).await?;
    w.user("mu", &[("bank-api", "DEPLOYMENT"), ("bank-api", "*")])
        .await?;
    sqlx::query("UPDATE alert_users SET active = false WHERE user_id = 'ina'")
        .execute(&w.db.pool)
        .await?;
    sqlx::query(
        "UPDATE alert_subscriptions SET muted = true WHERE user_id = 'mu' AND alert_kind = '*'",
    )
    .execute(&w.db.pool)
    .await?;
    let (status, body) = w
        .post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["id"].as_i64().unwrap_or_default();
    let forged = json!({"alertId": id, "alertKind": "ERROR", "appName": "shop-api"}).to_string();
    let event = kafka_event(&w.created_topic, 0, NOW_MS, &[forged])?;
    alert_fanout::handle(event, &w.fanout()?).await?;
    let records = read_topic(&w.user_topic, 5, Duration::from_secs(3)).await?;
    let users: Vec<String> = records
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.payload).unwrap_or_default();
            v["userId"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(users, ["ana"]);
    Ok(())
}

/// docs/functions/user-alert-delivery.md: a connection younger than 10 s is kept on a 410 (API
/// Gateway answers 410 while a new connection's handshake finishes); an older one is removed.
/// Planted: two connections the endpoint calls gone, one just made, one a minute old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_connection_is_kept_on_a_410_and_an_old_one_removed() -> anyhow::Result<()> {
    let w = World::new(&["conn-new", "conn-old"], &[]).await?;
    w.user("ana", &[("bank-api", "*")]).await?;
    w.connection("ana", "conn-old").await?;
    sqlx::query("UPDATE ws_connections SET connected_at = now() - interval '1 minute'")
        .execute(&w.db.pool)
        .await?;
    w.connection("ana", "conn-new").await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    alert_fanout::handle(w.event_from(&w.created_topic, 1).await?, &w.fanout()?).await?;
    user_alert_delivery::handle(w.event_from(&w.user_topic, 1).await?, &w.delivery()?).await?;
    let left: Vec<String> = sqlx::query_scalar("SELECT connection_id FROM ws_connections")
        .fetch_all(&w.db.pool)
        .await?;
    assert_eq!(left, ["conn-new"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_endpoints_are_removed_and_a_failing_channel_retries_only_itself() -> anyhow::Result<()>
{
    let w = World::new(&["conn-gone"], &["conn-down"]).await?;
    w.user("ana", &[("bank-api", "*")]).await?;
    w.user("bo", &[("bank-api", "*")]).await?;
    let disabled = w.push("ana").await?;
    disable_endpoint(&adapters::aws::sns(&w.aws.sdk), &disabled).await?;
    w.connection("ana", "conn-gone").await?;
    // Connected a while ago: a connection younger than 10 s is kept on a 410 (its handshake may
    // still be finishing).
    sqlx::query("UPDATE ws_connections SET connected_at = now() - interval '1 minute'")
        .execute(&w.db.pool)
        .await?;
    w.connection("bo", "conn-ok").await?;
    w.connection("bo", "conn-down").await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    alert_fanout::handle(w.event_from(&w.created_topic, 1).await?, &w.fanout()?).await?;
    let user_alerts = w.event_from(&w.user_topic, 2).await?;

    // One quick retry, then the records go to the dead-letter topic (conn-down keeps failing).
    let delivery = w.delivery_with(Retry {
        backoff: vec![Duration::from_millis(50)],
        reserve: Duration::ZERO,
    })?;
    let summary = user_alert_delivery::handle(user_alerts.clone(), &delivery).await?;
    assert_eq!(summary.exhausted, 2);
    let states = w.deliveries().await?;
    assert_eq!(
        states,
        vec![
            ("ana".into(), "push".into(), "gone".into()),
            ("ana".into(), "web".into(), "gone".into()),
            ("bo".into(), "web".into(), "pending".into()),
            ("bo".into(), "web".into(), "delivered".into()),
        ]
    );
    assert_eq!(w.db.count("SELECT count(*) FROM push_endpoints").await?, 0);
    assert_eq!(
        w.db.count("SELECT count(*) FROM ws_connections WHERE connection_id = 'conn-gone'")
            .await?,
        0
    );
    let statuses = w.statuses().await?;
    assert_eq!(statuses[0].2, "stored", "every channel of ana is gone");
    assert_eq!(statuses[1].2, "delivering");
    assert_eq!(w.ws.received("conn-ok").await.len(), 1);

    // The outage ends; the redriven records send only what is pending, once.
    w.ws.heal().await;
    let summary = user_alert_delivery::handle(user_alerts, &w.delivery()?).await?;
    assert_eq!((summary.applied, summary.exhausted), (0, 0));
    assert_eq!(w.ws.received("conn-down").await.len(), 1);
    assert_eq!(w.ws.received("conn-ok").await.len(), 0, "not sent again");
    assert_eq!(
        sqlx::query_scalar::<_, String>(
            "SELECT status FROM user_alert_statuses WHERE user_id = 'bo'"
        )
        .fetch_one(&w.db.pool)
        .await?,
        "delivered"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letter_topic_and_the_rest_proceed() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    w.user("ana", &[("bank-api", "*")]).await?;
    w.connection("ana", "conn-ana").await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    let good = read_topic(&w.created_topic, 1, Duration::from_secs(20)).await?;
    let good = String::from_utf8_lossy(&good[0].payload).into_owned();
    let created = kafka_event(
        &w.created_topic,
        0,
        NOW_MS,
        &[
            "not json".into(),
            "[1,2,3]".into(),
            r#"{"alertId":"1","alertKind":"DEPLOYMENT","appName":"a"}"#.into(),
            r#"{"alertId":999999,"alertKind":"DEPLOYMENT","appName":"bank-api"}"#.into(),
            "\u{0}\u{1}".into(),
            good,
        ],
    )?;
    let summary = alert_fanout::handle(created, &w.fanout()?).await?;
    assert_eq!(
        (summary.records, summary.rejected, summary.applied),
        (6, 4, 1)
    );

    let id: i64 = sqlx::query_scalar("SELECT id FROM alerts")
        .fetch_one(&w.db.pool)
        .await?;
    let user_alerts = kafka_event(
        &w.user_topic,
        0,
        NOW_MS,
        &[
            json!({"alertId": id, "userId": "ana"}).to_string(),
            json!({"alertId": id, "userId": ""}).to_string(),
            json!({"alertId": 424242, "userId": "ana"}).to_string(),
            json!({"alertId": id}).to_string(),
            "{".into(),
        ],
    )?;
    let summary = user_alert_delivery::handle(user_alerts, &w.delivery()?).await?;
    assert_eq!(
        (summary.records, summary.rejected, summary.applied),
        (5, 3, 1)
    );
    assert_eq!(w.ws.received("conn-ana").await.len(), 1);

    let dead = read_topic(&w.dlq, 6, Duration::from_secs(10)).await?;
    assert_eq!(
        dead.len(),
        6,
        "4 from fan-out (1 unknown alert), 2 + 1 from delivery"
    );
    let reasons: Vec<&str> = dead
        .iter()
        .filter_map(|r| r.headers.get("dlq.error").map(String::as_str))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("alert 999999 does not exist")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("alert 424242 does not exist")),
        "{reasons:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_fan_out_resumes_and_every_user_gets_it() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    // More recipients than one page, so the outage can fall between pages.
    sqlx::query(
        "INSERT INTO alert_users (user_id) SELECT 'user' || lpad(i::text, 6, '0') FROM generate_series(1, 25000) i",
    )
    .execute(&w.db.pool)
    .await?;
    sqlx::query("INSERT INTO alert_subscriptions (user_id, app_name) SELECT user_id, 'bank-api' FROM alert_users")
        .execute(&w.db.pool)
        .await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    let created = w.event_from(&w.created_topic, 1).await?;
    let id: i64 = sqlx::query_scalar("SELECT id FROM alerts")
        .fetch_one(&w.db.pool)
        .await?;

    // A crash after the first page: the ledger says how far it got.
    sqlx::query("INSERT INTO alert_fanouts (alert_id, last_user_id, published) VALUES ($1, 'user010000', 10000)")
        .bind(id)
        .execute(&w.db.pool)
        .await?;
    let summary = alert_fanout::handle(created.clone(), &w.fanout()?).await?;
    assert_eq!(summary.applied, 1);
    let records = read_topic(&w.user_topic, 20_000, Duration::from_secs(30)).await?;
    assert_eq!(records.len(), 15_000, "resumed after the acknowledged page");

    // The database cut mid-batch: retried, then dead-lettered; nothing lost after redrive.
    sqlx::query("DELETE FROM alert_fanouts")
        .execute(&w.db.pool)
        .await?;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let cut = proxy.pool_for(&w.db);
    proxy.cut();
    let failing = w.fanout_on(
        cut,
        Retry {
            backoff: vec![Duration::from_millis(50)],
            reserve: Duration::ZERO,
        },
    )?;
    let summary = alert_fanout::handle(created.clone(), &failing).await?;
    assert_eq!(summary.exhausted, 1);
    assert_eq!(
        read_topic(&w.dlq, 1, Duration::from_secs(10)).await?.len(),
        1
    );
    proxy.restore();
    let summary = alert_fanout::handle(created, &w.fanout()?).await?;
    assert_eq!(summary.applied, 1);
    let total: i64 = sqlx::query_scalar("SELECT published FROM alert_fanouts")
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(total, 25_000);
    Ok(())
}

#[tokio::test]
async fn the_websocket_authorizer_allows_only_valid_tokens_for_the_audience() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let deps = alert_connections::Deps {
        db: db.pool.clone(),
        verifier: integration_tests::local_issuer_keys().await?,
    };
    let authorize = |token: Option<String>| {
        let mut event = json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:ap-northeast-2:123456789012:abc/prod/$connect",
            "headers": {},
        });
        if let Some(token) = token {
            event["queryStringParameters"] = json!({ "token": token });
        }
        event
    };
    let effect = |answer: &Value| answer["policyDocument"]["Statement"][0]["Effect"].clone();
    let allowed =
        alert_connections::handle(authorize(Some(token("ana", LOCAL_AUDIENCE, 300)?)), &deps)
            .await?;
    assert_eq!(effect(&allowed), "Allow");
    assert_eq!(allowed["context"]["userId"], "ana");
    // docs/functions/alert-connections.md: RS256 of the issuer's keys, issuer, audience,
    // expiry, not-before and a subject are all checked. Planted: tokens signed with the right
    // key that claim one wrong thing each, and tokens not signed by it.
    let jwt = repo_root().join(".stack/jwt");
    let now = devtools::token::unix_now()?;
    let claims = |change: Value| {
        let mut claims = json!({
            "iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": "ana",
            "iat": now, "exp": now + 300, "scope": "alerts:write",
        });
        for (key, value) in change.as_object().into_iter().flatten() {
            if value.is_null() {
                claims.as_object_mut().map(|c| c.remove(key));
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let signed = |change: Value| devtools::token::signed_token(&jwt, &claims(change));
    let good = token("ana", LOCAL_AUDIENCE, 300)?;
    let unsigned = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = good.split('.').nth(1).unwrap_or_default();
        format!("{}.{payload}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#))
    };
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b64.encode(claims(json!({"sub": "mallory"})).to_string());
        format!("{}.{payload}.{}", parts[0], parts.get(2).unwrap_or(&""))
    };
    for (what, refused) in [
        ("no token", None),
        (
            "another audience",
            Some(token("ana", "another-audience", 300)?),
        ),
        ("expired", Some(token("ana", LOCAL_AUDIENCE, -600)?)),
        ("not a token", Some("not-a-token".to_owned())),
        (
            "another issuer",
            Some(signed(json!({"iss": "https://evil.example/"}))?),
        ),
        ("not yet valid", Some(signed(json!({"nbf": now + 3600}))?)),
        ("no subject", Some(signed(json!({"sub": null}))?)),
        ("empty subject", Some(signed(json!({"sub": ""}))?)),
        ("no expiry", Some(signed(json!({"exp": null}))?)),
        ("alg none", Some(unsigned)),
        ("payload changed after signing", Some(tampered)),
    ] {
        let answer = alert_connections::handle(authorize(refused), &deps).await?;
        assert_eq!(effect(&answer), "Deny", "{what}");
    }

    // $connect twice and $disconnect twice: one row, then none.
    let route = |key: &str, user: Option<&str>| {
        let mut context = json!({ "routeKey": key, "connectionId": "c-1", "eventType": "CONNECT" });
        if let Some(user) = user {
            context["authorizer"] = json!({ "principalId": user, "userId": user });
        }
        json!({ "requestContext": context })
    };
    for _ in 0..2 {
        alert_connections::handle(route("$connect", Some("ana")), &deps).await?;
    }
    assert_eq!(
        db.count("SELECT count(*) FROM ws_connections WHERE user_id = 'ana'")
            .await?,
        1
    );
    let unauthorized = alert_connections::handle(route("$connect", None), &deps).await?;
    assert_eq!(unauthorized["statusCode"], 401);
    for _ in 0..2 {
        alert_connections::handle(route("$disconnect", None), &deps).await?;
    }
    assert_eq!(db.count("SELECT count(*) FROM ws_connections").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_apis_authorizer_refuses_what_api_gateway_would() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    // alert-intake behind the local invoke API, as cargo lambda watch would run it.
    let deps = Arc::new(w.intake()?);
    let invoked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = invoke_endpoint({
        let (deps, invoked) = (deps.clone(), invoked.clone());
        move |event: Value| {
            let (deps, invoked) = (deps.clone(), invoked.clone());
            async move {
                invoked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
                    return json!({"errorType": "Parse", "errorMessage": "not an HTTP API event"});
                };
                let Ok(response) = alert_intake::router(deps).oneshot(request).await;
                let status = response.status().as_u16();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                json!({"statusCode": status, "headers": {"content-type": "application/json"},
                       "body": String::from_utf8_lossy(&bytes)})
            }
        }
    })
    .await?;
    // The gateway from the template the stack deploys: its routes, stage and authorizer.
    let template: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join(".stack/template.local.json"),
    )?)?;
    let routes = local_triggers::http_api::routes(&template)?;
    assert!(
        routes
            .iter()
            .any(|r| r.function == "alert-intake" && r.jwt.is_some())
    );
    let gateway = local_triggers::http_api::HttpGateway::new(
        routes,
        &local_jwks()?,
        local_triggers::invoke::Invoker::new(&base)?,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/alerts", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, gateway.router()).await });

    let client = reqwest::Client::new();
    let send = |token: Option<String>| {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(alert_body("bank-api", "DEPLOYMENT", None));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for refused in [
        None,
        Some(token("ops", "another-audience", 300)?),
        Some(token("ops", LOCAL_AUDIENCE, -600)?),
        Some("not.a.token".to_owned()),
    ] {
        let response = send(refused).await?;
        assert_eq!(response.status(), 401);
        assert_eq!(response.text().await?, r#"{"message":"Unauthorized"}"#);
    }
    assert_eq!(
        invoked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing refused reached the function"
    );
    let accepted = send(Some(token("ops-console", LOCAL_AUDIENCE, 300)?)).await?;
    assert_eq!(accepted.status(), 202);
    let body: Value = serde_json::from_str(&accepted.text().await?)?;
    let created_by: String = sqlx::query_scalar("SELECT created_by FROM alerts WHERE id = $1")
        .bind(body["id"].as_i64().unwrap_or_default())
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(
        created_by, "ops-console",
        "the caller is the token's subject"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_a_dead_sender_still_holds_are_not_dropped() -> anyhow::Result<()> {
    let w = World::new(&[], &[]).await?;
    w.user("ana", &[("bank-api", "*")]).await?;
    w.connection("ana", "conn-ana").await?;
    w.post(Some("ops"), &alert_body("bank-api", "DEPLOYMENT", None))
        .await?;
    alert_fanout::handle(w.event_from(&w.created_topic, 1).await?, &w.fanout()?).await?;
    let user_alerts = w.event_from(&w.user_topic, 1).await?;
    // A sender created the status, claimed the delivery and died before sending it.
    let quick = Retry {
        backoff: vec![Duration::from_millis(50)],
        reserve: Duration::ZERO,
    };
    w.ws.fail_all().await;
    user_alert_delivery::handle(user_alerts.clone(), &w.delivery_with(quick.clone())?).await?;
    sqlx::query("UPDATE user_alert_deliveries SET claimed_at = now(), state = 'pending'")
        .execute(&w.db.pool)
        .await?;
    w.ws.heal().await;
    // Its redelivery must not be confirmed while the claim lives: retried, then dead-lettered.
    let summary =
        user_alert_delivery::handle(user_alerts.clone(), &w.delivery_with(quick)?).await?;
    assert_eq!(summary.exhausted, 1, "held elsewhere: not confirmed");
    assert!(w.ws.received("conn-ana").await.is_empty());
    // Once the claim has expired, the redrive sends it, once.
    sqlx::query("UPDATE user_alert_deliveries SET claimed_at = now() - interval '1 minute'")
        .execute(&w.db.pool)
        .await?;
    let summary = user_alert_delivery::handle(user_alerts, &w.delivery()?).await?;
    assert_eq!(summary.exhausted, 0);
    assert_eq!(w.ws.received("conn-ana").await.len(), 1);
    assert_eq!(w.statuses().await?[0].2, "delivered");
    Ok(())
}

#[tokio::test]
async fn the_websocket_authorizer_follows_the_issuers_key_rotation() -> anyhow::Result<()> {
    // The issuer's JWKS as a file the authorizer fetches, first with the local key only.
    let dir = std::env::temp_dir().join(unique("issuer-"));
    std::fs::create_dir_all(&dir)?;
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, local_jwks()?)?;
    let url = format!("file://{}", jwks.display());
    // The issuer's next key.
    let next = dir.join("next");
    let made = std::process::Command::new("python3")
        .arg(repo_root().join("infra/local/jwt_keys.py"))
        .arg(&next)
        .status()?;
    anyhow::ensure!(made.success(), "jwt_keys.py failed");
    let token = devtools::token::local_token(&next, "ana", LOCAL_AUDIENCE, "alerts:write", 300)?;

    let now =
        adapters::jwt::IssuerKeys::fetch_every(&url, LOCAL_ISSUER, LOCAL_AUDIENCE, Duration::ZERO)
            .await?;
    let rarely = adapters::jwt::IssuerKeys::fetch(&url, LOCAL_ISSUER, LOCAL_AUDIENCE).await?;
    assert!(
        now.verify(&token).await.is_err(),
        "a key the issuer has not published"
    );
    // The issuer rotates: its JWKS now has the next key.
    std::fs::copy(next.join("jwks.json"), &jwks)?;
    let claims = now.verify(&token).await?;
    assert_eq!(claims.sub, "ana", "fetched again for the new kid");
    // Fetching again is rate-limited: within the minute the old keys stay.
    assert!(rarely.verify(&token).await.is_err());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
