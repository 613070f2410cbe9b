//! admin-api against the real stack: every endpoint, pagination, idempotent changes and their
//! audit, roles, bad input, outages, and the template's routes in front of it.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::StatusCode;
use integration_tests::{AdminApi, Answer, TcpProxy, admin_call, invoke_endpoint, repo_root};
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn ok(answer: &Answer) {
    assert!(answer.status.is_success(), "{answer:?}");
}

/// Every error is problem JSON saying nothing internal.
fn problem(answer: &Answer, status: u16) {
    assert_eq!(answer.status.as_u16(), status, "{answer:?}");
    assert_eq!(
        answer.content_type(),
        "application/problem+json",
        "{answer:?}"
    );
    assert_eq!(answer.body["status"], status);
    let text = answer.body.to_string().to_lowercase();
    for internal in [
        "sqlx",
        "postgres",
        "constraint",
        "panicked",
        "127.0.0.1",
        "select ",
    ] {
        assert!(!text.contains(internal), "{internal} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_reader_and_changes_an_admin_with_a_key() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    api.cdp.advertiser(7, "NEW").await?;
    // No verified claims (a route deployed without the authorizer): 401.
    problem(
        &api.call("GET", "/backfill/status", None, None, None)
            .await?,
        401,
    );
    // A token of the console without an ops scope: 403, for reads and changes.
    problem(
        &api.call("GET", "/backfill/status", Some("alerts:write"), None, None)
            .await?,
        403,
    );
    ok(&api.get("/backfill/status").await?);
    let trigger = "/backfill/advertisers/7/trigger";
    problem(
        &api.call("POST", trigger, Some("ops:read"), None, Some("k-1"))
            .await?,
        403,
    );
    problem(
        &api.call("POST", trigger, Some("ops:admin"), None, None)
            .await?,
        400,
    );
    problem(
        &api.call("POST", trigger, Some("ops:admin"), None, Some("has space"))
            .await?,
        400,
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_audit")
        .fetch_one(&api.cdp.db.pool)
        .await?;
    assert_eq!(
        audited, 0,
        "nothing refused before it ran is audited as done"
    );
    // Health needs no token; the document is served to readers.
    ok(&api.call("GET", "/health", None, None, None).await?);
    let document = api.get("/openapi.json").await?;
    ok(&document);
    assert_eq!(
        document.body,
        serde_json::to_value(admin_api::openapi::document())?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_is_shown_and_controlled() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    let pool = &api.cdp.db.pool;
    // Added through the API: its 24 months are created and the oldest queued.
    let added = api
        .change(
            "/backfill/advertisers",
            Some(r#"{"advertiser_id": 41, "name": "Hanbit Foods"}"#),
        )
        .await?;
    assert_eq!(added.status, StatusCode::CREATED, "{added:?}");
    assert_eq!(added.body, json!({"advertiser_id": 41, "added": true}));
    let again = api
        .change(
            "/backfill/advertisers",
            Some(r#"{"advertiser_id": 41, "name": "Hanbit Foods"}"#),
        )
        .await?;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["added"], false);
    api.cdp.advertiser(42, "EXISTING").await?;

    let status = api.get("/backfill/status").await?;
    ok(&status);
    assert_eq!(status.body["advertisers"]["total"], 2);
    assert_eq!(status.body["advertisers"]["backfilling"], 1);
    assert_eq!(status.body["months"]["pending"], 23);
    assert_eq!(status.body["months"]["queued"], 1);

    let progress = api.get("/backfill/advertisers/41/progress").await?;
    ok(&progress);
    assert_eq!(progress.body["months_total"], 24);
    assert_eq!(progress.body["months_done"], 0);
    assert_eq!(progress.body["months_in_flight"], 1);
    assert_eq!(progress.body["eta"], Value::Null, "no pace measured yet");
    // Months done: the pace of the last ones gives an ETA.
    sqlx::query(
        "UPDATE cdp_months SET state = 'COMPLETED', claim_token = NULL,
                completed_at = now() - (month - (SELECT min(month) FROM cdp_months WHERE advertiser_id = 41)) / 30 * interval '1 minute'
         WHERE advertiser_id = 41 AND month < (SELECT min(month) FROM cdp_months WHERE advertiser_id = 41) + interval '4 months'",
    )
    .execute(pool)
    .await?;
    let progress = api.get("/backfill/advertisers/41/progress").await?;
    assert_eq!(progress.body["months_done"], 4);
    assert!(progress.body["eta"].is_string(), "{progress:?}");
    problem(&api.get("/backfill/advertisers/99/progress").await?, 404);

    // Its months, ten at a time: three pages, each month once, oldest first.
    let mut months = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/backfill/advertisers/41/months?limit=10&cursor={c}"),
            None => "/backfill/advertisers/41/months?limit=10".to_owned(),
        };
        let page = api.get(&path).await?;
        ok(&page);
        for month in page.body["items"].as_array().into_iter().flatten() {
            months.push(month["month"].as_str().unwrap_or_default().to_owned());
        }
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(months.len(), 24);
    let mut sorted = months.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, months);
    let completed = api
        .get("/backfill/advertisers/41/months?state=COMPLETED")
        .await?;
    assert_eq!(completed.body["items"].as_array().map(Vec::len), Some(4));

    // Running jobs; a trigger queues the EXISTING advertiser's current month.
    let triggered = api.change("/backfill/advertisers/42/trigger", None).await?;
    assert_eq!(triggered.status, StatusCode::ACCEPTED, "{triggered:?}");
    assert_eq!(triggered.body["queued"], 1);
    // 41's months done so far were marked by hand: a trigger queues its next one.
    let triggered = api.change("/backfill/advertisers/41/trigger", None).await?;
    assert_eq!(triggered.body["queued"], 1, "{triggered:?}");
    let running = api.get("/backfill/running?limit=1").await?;
    assert_eq!(
        running.body["items"].as_array().map(Vec::len),
        Some(1),
        "{running:?}"
    );
    let rest = api
        .get(&format!(
            "/backfill/running?cursor={}",
            running.body["next_cursor"].as_str().unwrap_or_default()
        ))
        .await?;
    assert_eq!(
        rest.body["items"].as_array().map(Vec::len),
        Some(1),
        "{rest:?} after {running:?}"
    );
    assert_ne!(running.body["items"][0], rest.body["items"][0]);

    // Retry: only a FAILED month; then deactivation stops it and activation revives it.
    let failed_month = &months[5];
    problem(
        &api.change(
            &format!("/backfill/advertisers/41/months/{failed_month}/retry"),
            None,
        )
        .await?,
        409,
    );
    sqlx::query(
        "UPDATE cdp_months SET state = 'FAILED', claim_token = NULL, retry_count = 4, error = 'boom'
         WHERE advertiser_id = 41 AND to_char(month, 'YYYY-MM') = $1",
    )
    .bind(failed_month)
    .execute(pool)
    .await?;
    let retried = api
        .change(
            &format!("/backfill/advertisers/41/months/{failed_month}/retry"),
            None,
        )
        .await?;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{retried:?}");
    let deactivated = api
        .change(
            "/backfill/advertisers/41/deactivate",
            Some(r#"{"reason": "contract paused"}"#),
        )
        .await?;
    assert_eq!(
        deactivated.body,
        json!({"advertiser_id": 41, "active": false})
    );
    let advertiser = api.get("/backfill/advertisers/41").await?;
    assert_eq!(advertiser.body["active"], false);
    assert_eq!(advertiser.body["deactivated_reason"], "contract paused");
    assert_eq!(advertiser.body["deactivated_by"], "ops-ops-admin");
    problem(
        &api.change("/backfill/advertisers/41/trigger", None).await?,
        409,
    );
    let inactive = api.get("/backfill/advertisers?active=false").await?;
    assert_eq!(inactive.body["items"][0]["advertiser_id"], 41);
    let activated = api
        .change("/backfill/advertisers/41/activate", None)
        .await?;
    assert_eq!(activated.body["active"], true);
    problem(
        &api.change("/backfill/advertisers/99/activate", None)
            .await?,
        404,
    );

    // Every change is audited: who, what, the request id, the status.
    let audit: Vec<(String, String, String, i16)> =
        sqlx::query_as("SELECT subject, action, target, status FROM admin_audit ORDER BY id")
            .fetch_all(pool)
            .await?;
    let actions: Vec<&str> = audit.iter().map(|(_, a, _, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "backfill.add_advertiser",
            "backfill.add_advertiser",
            "backfill.trigger",
            "backfill.trigger",
            "backfill.retry_month",
            "backfill.retry_month",
            "backfill.deactivate",
            "backfill.trigger",
            "backfill.activate",
            "backfill.activate",
        ]
    );
    assert!(audit.iter().all(|(who, ..)| who == "ops-ops-admin"));
    let request_ids: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT request_id) FROM admin_audit WHERE request_id LIKE 'req-%'",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(request_ids, 10);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_performs_its_change_once_even_concurrently() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    let body = r#"{"advertiser_id": 51, "name": "Mirae Books"}"#;
    let add = |key: &'static str, body: &'static str| {
        admin_call(
            api.deps.clone(),
            "POST",
            "/backfill/advertisers",
            Some("ops:admin"),
            Some(body),
            Some(key),
        )
    };
    // One after another: the repeat is the first answer, replayed.
    let first = add("same-key", body).await?;
    assert_eq!(first.status, StatusCode::CREATED);
    let repeat = add("same-key", body).await?;
    assert_eq!((repeat.status, &repeat.body), (first.status, &first.body));
    assert!(repeat.replayed() && !first.replayed());
    // The key for another request: refused.
    problem(
        &add(
            "same-key",
            r#"{"advertiser_id": 52, "name": "Sora Travel"}"#,
        )
        .await?,
        422,
    );
    // Concurrent: eight at once with one key run the change once.
    let body = r#"{"advertiser_id": 53, "name": "Daon Games"}"#;
    let answers = futures::future::join_all((0..8).map(|_| add("concurrent", body))).await;
    let mut performed = 0;
    for answer in answers {
        let answer = answer?;
        match answer.status.as_u16() {
            201 if !answer.replayed() => performed += 1,
            201 | 409 => {}
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    assert_eq!(performed, 1);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM admin_audit WHERE idempotency_key = 'concurrent'")
            .fetch_one(&api.cdp.db.pool)
            .await?;
    assert_eq!(audited, 1);
    let months: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cdp_months WHERE advertiser_id = 53")
            .fetch_one(&api.cdp.db.pool)
            .await?;
    assert_eq!(months, 24);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_their_runs_statistics_and_an_execution() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    let pool = &api.cdp.db.pool;
    sqlx::query(
        "INSERT INTO job_runs (job, target_date, started_at, finished_at, summary, error)
         SELECT CASE WHEN i % 2 = 0 THEN 'retention' ELSE 'budget-settlement' END, '2026-11-20',
                now() - interval '1 hour' + i * interval '1 minute',
                now() - interval '1 hour' + i * interval '1 minute' + i * interval '100 milliseconds',
                '{\"type\": \"job_summary\"}', CASE WHEN i % 5 = 0 THEN 'retryable: boom' END
         FROM generate_series(1, 20) AS i",
    )
    .execute(pool)
    .await?;
    let jobs = api.get("/jobs").await?;
    ok(&jobs);
    let names: Vec<&str> = jobs
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "daily-rollup",
            "budget-settlement",
            "retention",
            "cdp-orchestrator",
            "cdp-stale-cleanup",
            "daily-collection",
            "recommendations",
            "weekly-analysis",
            "monthly-report"
        ]
    );
    assert_eq!(jobs.body[2]["last_run"]["job"], "retention");
    assert_eq!(jobs.body[0]["last_run"], Value::Null);

    // Runs: newest first, filtered, in pages.
    let failed = api.get("/jobs/runs?failed=true").await?;
    assert_eq!(failed.body["items"].as_array().map(Vec::len), Some(4));
    assert!(
        failed.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["succeeded"] == false && r["error"] == "retryable: boom")
    );
    let mut seen = BTreeSet::new();
    let mut path = "/jobs/runs?job=retention&limit=4".to_owned();
    loop {
        let page = api.get(&path).await?;
        let ids: Vec<i64> = page.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
        seen.extend(ids);
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/jobs/runs?job=retention&limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    let one = seen.first().copied().unwrap_or_default();
    let run = api.get(&format!("/jobs/runs/{one}")).await?;
    assert_eq!(run.body["job"], "retention");
    assert!(run.body["duration_ms"].as_i64().is_some_and(|ms| ms > 0));
    problem(&api.get("/jobs/runs/999999").await?, 404);

    let stats = api.get("/jobs/statistics").await?;
    ok(&stats);
    let retention = &stats.body["jobs"][1];
    assert_eq!(retention["job"], "retention");
    assert_eq!(retention["runs"], 10);
    assert_eq!(retention["failures"], 2);
    assert!(retention["p95_ms"].as_f64() >= retention["p50_ms"].as_f64());
    problem(
        &api.get("/jobs/statistics?from=2026-11-20T00:00:00Z&to=2026-11-19T00:00:00Z")
            .await?,
        422,
    );

    // An execution: the schedule's input with its id, invoked; the run the job records under it.
    let executed = api
        .change(
            "/jobs/daily-rollup/executions",
            Some(r#"{"date": "2026-11-20"}"#),
        )
        .await?;
    assert_eq!(executed.status, StatusCode::ACCEPTED, "{executed:?}");
    let id = executed.body["execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let invoked = api.invoked.lock().map(|i| i.clone()).unwrap_or_default();
    assert_eq!(
        invoked,
        [(
            "daily-rollup".to_owned(),
            json!({"date": "2026-11-20", "execution_id": id})
        )]
    );
    let execution = api.get(&format!("/jobs/executions/{id}")).await?;
    assert_eq!(execution.body["state"], "succeeded", "{execution:?}");
    let run = api
        .get(&format!(
            "/jobs/runs/{}",
            execution.body["run_id"].as_i64().unwrap_or_default()
        ))
        .await?;
    assert_eq!(run.body["job"], "daily-rollup");
    assert_eq!(run.body["target_date"], "2026-11-20");
    assert_eq!(run.body["execution_id"], json!(id));

    // What the job cannot take is refused before anything is invoked.
    for (path, body, status) in [
        ("/jobs/daily-rollup/executions", r#"{"dry_run": true}"#, 422),
        (
            "/jobs/daily-rollup/executions",
            r#"{"date": "2999-01-01"}"#,
            422,
        ),
        (
            "/jobs/cdp-orchestrator/executions",
            r#"{"date": "2026-11-20"}"#,
            422,
        ),
        ("/jobs/daily-rollup/executions", r#"{"date": 5}"#, 422),
        ("/jobs/nope/executions", "{}", 404),
    ] {
        problem(&api.change(path, Some(body)).await?, status);
    }
    assert_eq!(api.invoked.lock().map(|i| i.len()).unwrap_or_default(), 1);

    // Lambda unreachable: 503, nothing listed, and the same key works once it is back.
    let down = AdminApi::deps_with(&api.cdp, "http://127.0.0.1:9", pool.clone())?;
    let down = Arc::new(down);
    let call = |deps: Arc<admin_api::Deps>| {
        admin_call(
            deps,
            "POST",
            "/jobs/retention/executions",
            Some("ops:admin"),
            Some(r#"{"dry_run": true}"#),
            Some("retry-me"),
        )
    };
    problem(&call(down).await?, 503);
    let executions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_executions WHERE job = 'retention'")
            .fetch_one(pool)
            .await?;
    assert_eq!(executions, 0);
    let retried = call(api.deps.clone()).await?;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{retried:?}");
    assert!(!retried.replayed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_dead_letters_outcomes_deliveries_and_reviews() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    let pool = &api.cdp.db.pool;
    sqlx::raw_sql(
        "INSERT INTO kafka_dead_letters (consumer, topic, partition, \"offset\", reason, created_at, sent_at)
         SELECT CASE WHEN i <= 7 THEN 'coupon-issue' ELSE 'budget-sync' END,
                CASE WHEN i <= 7 THEN 'coupon-issue-requests' ELSE 'budget-management' END,
                i % 2, i, 'reason ' || i, now() - (20 - i) * interval '1 minute', now()
         FROM generate_series(1, 10) AS i;
         INSERT INTO coupon_issue_outcomes (request_id, coupon_id, user_id, requested_at, outcome, topic, partition, \"offset\")
         VALUES ('req-1', 3001, 9, now(), 'issued', 'coupon-issue-requests', 0, 1);
         INSERT INTO alerts (id, alert_kind, app_name, title, body, severity, created_by)
         VALUES (900, 'DEPLOYMENT', 'bank-api', 'Deployed', 'v2', 'info', 'ops');
         INSERT INTO user_alert_statuses (alert_id, user_id, status)
         VALUES (900, 'ana', 'delivered'), (900, 'bo', 'delivering');
         INSERT INTO user_alert_deliveries (alert_id, user_id, channel, target, state, attempts)
         VALUES (900, 'ana', 'web', 'conn-1', 'delivered', 1), (900, 'ana', 'push', 'arn:1', 'gone', 1),
                (900, 'bo', 'push', 'arn:2', 'pending', 2);
         INSERT INTO rollup_reviews (stat_date, campaign_id, advertiser_id, metric, rolled_up, raw, difference_ratio)
         VALUES ('2026-11-20', 1, 77, 'impressions', 100, 80, 0.25),
                ('2026-11-20', 2, 77, 'clicks', 10, 8, 0.25),
                ('2026-11-19', 3, 78, 'impressions', 100, 90, 0.11)",
    )
    .execute(pool)
    .await?;

    let summary = api.get("/dead-letters").await?;
    assert_eq!(summary.body[1]["consumer"], "coupon-issue");
    assert_eq!(summary.body[1]["total"], 7);
    assert_eq!(
        summary.body[1]["recent_reasons"],
        json!(["reason 7", "reason 6", "reason 5", "reason 4", "reason 3"])
    );
    let mut offsets = Vec::new();
    let mut path = "/dead-letters/coupon-issue?limit=3".to_owned();
    loop {
        let page = api.get(&path).await?;
        ok(&page);
        offsets.extend(
            page.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["offset"].as_i64()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/dead-letters/coupon-issue?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(offsets, [7, 6, 5, 4, 3, 2, 1], "newest first, each once");
    let redrive = api
        .change("/dead-letters/coupon-issue/redrive", None)
        .await?;
    assert_eq!(redrive.status, StatusCode::ACCEPTED);
    assert_eq!(redrive.body["requests"][0]["dlq_topic"], "coupon-issue-dlq");
    let redrive = api
        .change("/dead-letters/budget-sync/redrive", None)
        .await?;
    assert_eq!(
        redrive.body["requests"][0]["dlq_topic"],
        "budget-management-dlq"
    );
    problem(
        &api.change("/dead-letters/nobody/redrive", None).await?,
        404,
    );
    let summary = api.get("/dead-letters").await?;
    assert!(summary.body[1]["pending_redrive_since"].is_string());
    // `make redrive DLQ=coupon-issue-dlq` marks the request done once it replayed the topic.
    let marked = devtools::redrive::mark_requests_done(pool, "coupon-issue-dlq", 7).await?;
    assert_eq!(marked, 1);
    let summary = api.get("/dead-letters").await?;
    assert_eq!(summary.body[1]["pending_redrive_since"], Value::Null);
    assert!(summary.body[0]["pending_redrive_since"].is_string());

    let outcome = api.get("/coupons/requests/req-1").await?;
    assert_eq!(outcome.body["outcome"], "issued");
    problem(&api.get("/coupons/requests/req-2").await?, 404);

    let deliveries = api.get("/alerts/900/deliveries?limit=2").await?;
    ok(&deliveries);
    assert_eq!(
        (
            &deliveries.body["recipients"],
            &deliveries.body["delivered"],
            &deliveries.body["gone"],
            &deliveries.body["pending"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(1))
    );
    assert_eq!(
        deliveries.body["deliveries"]["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // No push endpoint or connection id anywhere in the answer (planted: conn-1, arn:1, arn:2).
    let all = api.get("/alerts/900/deliveries").await?;
    let text = all.body.to_string();
    for target in ["conn-1", "arn:1", "arn:2"] {
        assert!(!text.contains(target), "{target} shown: {text}");
    }
    assert_eq!(
        all.body["deliveries"]["items"].as_array().map(Vec::len),
        Some(3)
    );
    let pending = api.get("/alerts/900/deliveries?state=pending").await?;
    assert_eq!(pending.body["deliveries"]["items"][0]["user_id"], "bo");
    problem(&api.get("/alerts/901/deliveries").await?, 404);

    let open = api.get("/rollup/reviews").await?;
    let keys: Vec<(String, i64)> = open.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["stat_date"].as_str().unwrap_or_default().to_owned(),
                r["campaign_id"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("2026-11-20".to_owned(), 1),
            ("2026-11-20".to_owned(), 2),
            ("2026-11-19".to_owned(), 3)
        ]
    );
    let resolved = api
        .change(
            "/rollup/reviews/2026-11-20/2/resolve",
            Some(r#"{"resolution": "late events, accepted"}"#),
        )
        .await?;
    assert_eq!(resolved.body["status"], "resolved");
    assert_eq!(resolved.body["resolved_by"], "ops-ops-admin");
    let again = api
        .change(
            "/rollup/reviews/2026-11-20/2/resolve",
            Some(r#"{"resolution": "something else"}"#),
        )
        .await?;
    assert_eq!(
        again.body["resolution"], "late events, accepted",
        "the first resolution is kept"
    );
    let open = api.get("/rollup/reviews?advertiser_id=77").await?;
    assert_eq!(open.body["items"].as_array().map(Vec::len), Some(1));
    let resolved = api.get("/rollup/reviews?status=resolved").await?;
    assert_eq!(resolved.body["items"][0]["campaign_id"], 2);
    problem(
        &api.change(
            "/rollup/reviews/2026-11-20/9/resolve",
            Some(r#"{"resolution": "x"}"#),
        )
        .await?,
        404,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_of_every_kind_is_a_problem_and_changes_nothing() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    api.cdp.advertiser(7, "NEW").await?;
    let injection = "1%27%20OR%201%3D1%20--";
    for path in [
        "/backfill/advertisers/abc/progress".to_owned(),
        format!("/backfill/advertisers/{injection}"),
        "/backfill/advertisers/99999999999999999999999".to_owned(),
        "/backfill/advertisers?limit=0".to_owned(),
        "/backfill/advertisers?limit=100000".to_owned(),
        "/backfill/advertisers?limit=-1".to_owned(),
        "/backfill/advertisers?cursor=zz".to_owned(),
        format!("/backfill/advertisers?cursor={injection}"),
        "/backfill/advertisers?active=maybe".to_owned(),
        "/backfill/advertisers?type=OLD".to_owned(),
        "/backfill/advertisers?unknown=1".to_owned(),
        "/jobs/runs?from=yesterday".to_owned(),
        "/jobs/executions/not-a-uuid".to_owned(),
        "/rollup/reviews?date=2026-13-40".to_owned(),
    ] {
        problem(&api.get(&path).await?, 422);
    }
    let runs = api.get(&format!("/jobs/runs?job={injection}")).await?;
    assert_eq!(
        runs.body["items"],
        json!([]),
        "an injection string is a value"
    );
    problem(
        &api.get(&format!("/coupons/requests/{injection}")).await?,
        404,
    );

    let bad_bodies: [(&str, Option<&str>, u16); 7] = [
        (
            "{\"advertiser_id\": \"8\", \"name\": \"x\"}",
            Some("application/json"),
            422,
        ),
        (
            "{\"advertiser_id\": 8, \"name\": \"x\", \"extra\": 1}",
            Some("application/json"),
            422,
        ),
        (
            "{\"advertiser_id\": -8, \"name\": \"x\"}",
            Some("application/json"),
            422,
        ),
        (
            "{\"advertiser_id\": 8, \"name\": \"\"}",
            Some("application/json"),
            422,
        ),
        ("[8, \"x\"]", Some("application/json"), 422),
        (
            "advertiser_id=8",
            Some("application/x-www-form-urlencoded"),
            415,
        ),
        ("not json", Some("application/json"), 422),
    ];
    for (body, content_type, status) in bad_bodies {
        let answer = raw_post(&api, "/backfill/advertisers", body, content_type).await?;
        problem(&answer, status);
    }
    let big = format!(
        r#"{{"advertiser_id": 8, "name": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    problem(
        &raw_post(
            &api,
            "/backfill/advertisers",
            &big,
            Some("application/json"),
        )
        .await?,
        413,
    );
    let name = "Robert'); DROP TABLE advertisers;--";
    let added = api
        .change(
            "/backfill/advertisers",
            Some(&json!({"advertiser_id": 9, "name": name}).to_string()),
        )
        .await?;
    assert_eq!(added.status, StatusCode::CREATED);
    let stored = api.get("/backfill/advertisers/9").await?;
    assert_eq!(stored.body["name"], name);
    let advertisers: i64 = sqlx::query_scalar("SELECT count(*) FROM advertisers")
        .fetch_one(&api.cdp.db.pool)
        .await?;
    assert_eq!(advertisers, 2, "only the good advertiser was added");
    problem(
        &api.change("/backfill/advertisers/7/months/2026-13/retry", None)
            .await?,
        422,
    );
    problem(
        &api.change(
            "/backfill/advertisers/7/deactivate",
            Some(r#"{"reason": ""}"#),
        )
        .await?,
        422,
    );
    problem(&api.get("/nowhere").await?, 404);
    Ok(())
}

/// A POST with a body of `content_type` as an admin, under a fresh key.
async fn raw_post(
    api: &AdminApi,
    path: &str,
    body: &str,
    content_type: Option<&str>,
) -> anyhow::Result<Answer> {
    let uri = format!("/v1/admin{path}");
    let context = json!({
        "requestId": "req-raw",
        "http": { "method": "POST", "path": uri, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
        "stage": "v1",
        "authorizer": { "jwt": { "claims": { "sub": "ops", "scope": "ops:admin" } } },
    });
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri(&uri)
        .header("idempotency-key", integration_tests::unique("raw-"))
        .extension(lambda_http::request::RequestContext::ApiGatewayV2(
            serde_json::from_value(context)?,
        ));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = admin_api::router(api.deps.clone())
        .oneshot(request.body(lambda_http::Body::from(body.to_owned()))?)
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok(Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_outages_say_nothing_internal() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    let health = api.call("GET", "/health", None, None, None).await?;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    let names: Vec<&str> = health.body["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["database", "redis", "kafka", "aws"]);
    // The database cut: health is degraded (503) and names nothing; a read is a bare 503.
    let proxy = TcpProxy::start("127.0.0.1:5432".parse()?).await?;
    let deps = Arc::new(AdminApi::deps_with(
        &api.cdp,
        &api.lambda_url,
        proxy.pool_for(&api.cdp.db),
    )?);
    ok(&admin_call(
        deps.clone(),
        "GET",
        "/backfill/status",
        Some("ops:read"),
        None,
        None,
    )
    .await?);
    proxy.cut();
    let degraded = admin_call(deps.clone(), "GET", "/health", None, None, None).await?;
    assert_eq!(degraded.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(degraded.body["status"], "degraded");
    assert_eq!(degraded.body["checks"][0]["ok"], false);
    assert_eq!(degraded.body["checks"][1]["ok"], true);
    assert!(!degraded.body.to_string().contains("127.0.0.1"));
    let read = admin_call(
        deps.clone(),
        "GET",
        "/backfill/status",
        Some("ops:read"),
        None,
        None,
    )
    .await?;
    problem(&read, 503);
    assert_eq!(read.body.get("detail"), None);
    // A change during the outage is refused as retryable; after it, the same key performs it.
    let add = |deps| {
        admin_call(
            deps,
            "POST",
            "/backfill/advertisers",
            Some("ops:admin"),
            Some(r#"{"advertiser_id": 61, "name": "After the outage"}"#),
            Some("outage-key"),
        )
    };
    problem(&add(deps.clone()).await?, 503);
    proxy.restore();
    assert_eq!(add(deps).await?.status, StatusCode::CREATED);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_opens_no_operation_of_the_document_but_health() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    let deps = api.deps.clone();
    let invoked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = invoke_endpoint({
        let invoked = invoked.clone();
        move |event: Value| {
            let (deps, invoked) = (deps.clone(), invoked.clone());
            async move {
                invoked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
                    return json!({"errorType": "Parse", "errorMessage": "not an HTTP API event"});
                };
                let Ok(response) = admin_api::router(deps).oneshot(request).await;
                let status = response.status().as_u16();
                let bytes = axum::body::to_bytes(response.into_body(), 8 << 20)
                    .await
                    .unwrap_or_default();
                json!({"statusCode": status, "headers": {"content-type": "application/json"},
                       "body": String::from_utf8_lossy(&bytes)})
            }
        }
    })
    .await?;
    let template: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join(".stack/template.local.json"),
    )?)?;
    let gateway = local_triggers::http_api::HttpGateway::new(
        local_triggers::http_api::routes(&template)?,
        &integration_tests::local_jwks()?,
        local_triggers::invoke::Invoker::new(&base)?,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, gateway.router()).await });

    // Every operation of the committed document, its parameters filled in.
    let document: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("docs/openapi.json"),
    )?)?;
    let client = reqwest::Client::new();
    let reader = integration_tests::scoped_token(
        "ops-reader",
        integration_tests::LOCAL_AUDIENCE,
        "ops:read",
        300,
    )?;
    let elsewhere =
        integration_tests::scoped_token("ops-reader", "another-audience", "ops:read", 300)?;
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        let concrete = path
            .replace("{advertiser_id}", "7")
            .replace("{month}", "2026-01")
            .replace("{run_id}", "1")
            .replace("{job}", "daily-rollup")
            .replace("{execution_id}", "00000000-0000-0000-0000-000000000000")
            .replace("{consumer}", "coupon-issue")
            .replace("{request_id}", "req-1")
            .replace("{alert_id}", "1")
            .replace("{stat_date}", "2026-11-20")
            .replace("{campaign_id}", "1")
            .replace("{user_id}", "7");
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            operations += 1;
            let send = |token: Option<&str>| {
                let mut request = client.request(
                    method.to_uppercase().parse().unwrap_or_default(),
                    format!("{url}{concrete}"),
                );
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                request.send()
            };
            let before = invoked.load(std::sync::atomic::Ordering::SeqCst);
            let anonymous = send(None).await?.status().as_u16();
            let wrong_audience = send(Some(&elsewhere)).await?.status().as_u16();
            if path == "/admin/health" {
                assert_eq!(anonymous, 200, "{method} {path}");
                continue;
            }
            assert_eq!((anonymous, wrong_audience), (401, 401), "{method} {path}");
            assert_eq!(
                invoked.load(std::sync::atomic::Ordering::SeqCst),
                before,
                "{method} {path}: refused requests reached the function"
            );
            let with_token = send(Some(&reader)).await?.status().as_u16();
            assert_ne!(with_token, 401, "{method} {path} refuses a good token");
        }
    }
    assert_eq!(operations, 28);
    Ok(())
}

/// docs/openapi.json is the contract: each limit it states is enforced, and a value the
/// database cannot take is the client's fault. Planted: a request on each side of every
/// documented limit the issue found unchecked, with the answer the document gives (the limits
/// are written here as the document states them, not read from the code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_limits_are_enforced_and_client_faults_are_4xx() -> anyhow::Result<()> {
    let api = AdminApi::new().await?;
    api.cdp.advertiser(61, "EXISTING").await?;
    let long = |n: usize| "a".repeat(n);
    // maxLength of path and query parameters: one over is 422, at the limit is served.
    problem(
        &api.get(&format!("/dead-letters/{}", long(101))).await?,
        422,
    );
    ok(&api.get(&format!("/dead-letters/{}", long(100))).await?);
    problem(
        &api.get(&format!("/dead-letters/coupon-issue?topic={}", long(250)))
            .await?,
        422,
    );
    ok(&api
        .get(&format!("/dead-letters/coupon-issue?topic={}", long(249)))
        .await?);
    problem(
        &api.get(&format!("/jobs/runs?job={}", long(101))).await?,
        422,
    );
    ok(&api.get(&format!("/jobs/runs?job={}", long(100))).await?);
    problem(
        &api.get(&format!("/coupons/requests/{}", long(201))).await?,
        422,
    );
    problem(
        &api.get(&format!("/coupons/requests/{}", long(200))).await?,
        404,
    );
    // A NUL byte PostgreSQL refuses (SQLSTATE 22021): the client's fault, not a retry.
    problem(&api.get("/coupons/requests/%00").await?, 422);
    problem(&api.get("/coupons/requests/a%00b").await?, 422);
    // minimum, maximum, format, type, unknown and repeated parameters.
    problem(&api.get("/backfill/advertisers/0").await?, 422);
    problem(&api.get("/backfill/advertisers?limit=0").await?, 422);
    problem(&api.get("/backfill/advertisers?limit=201").await?, 422);
    ok(&api.get("/backfill/advertisers?limit=200").await?);
    problem(&api.get("/backfill/advertisers?limit=ten").await?, 422);
    problem(&api.get("/backfill/advertisers?limt=10").await?, 422);
    problem(
        &api.get("/backfill/advertisers?limit=1&limit=2").await?,
        422,
    );
    problem(&api.get("/backfill/advertisers?active=yes").await?, 422);
    problem(&api.get("/jobs/executions/not-a-uuid").await?, 422);
    problem(&api.get("/insights/weekly?week=2026-13-01").await?, 422);
    problem(&api.get("/backfill/running?state=DONE").await?, 422);
    problem(
        &api.get("/backfill/advertisers/99999999999999999999")
            .await?,
        422,
    );
    // The Idempotency-Key header's pattern (visible ASCII, 1 to 255): 400.
    for key in ["has space", &long(256)] {
        problem(
            &api.call(
                "POST",
                "/backfill/advertisers/61/trigger",
                Some("ops:admin"),
                None,
                Some(key),
            )
            .await?,
            400,
        );
    }
    // A deactivation reason: 1 to 500 characters as sent; kept whole, the operator beside it.
    let deactivate = "/backfill/advertisers/61/deactivate";
    let body = |reason: &str| json!({ "reason": reason }).to_string();
    problem(
        &api.change(deactivate, Some(&body(&format!(" {}", long(500)))))
            .await?,
        422,
    );
    problem(&api.change(deactivate, Some(&body(&long(501)))).await?, 422);
    problem(&api.change(deactivate, Some(&body("   "))).await?, 422);
    problem(&api.change(deactivate, Some(&body(""))).await?, 422);
    ok(&api.change(deactivate, Some(&body(&long(500)))).await?);
    let advertiser = api.get("/backfill/advertisers/61").await?;
    assert_eq!(advertiser.body["deactivated_reason"], long(500));
    assert_eq!(advertiser.body["deactivated_by"], "ops-ops-admin");
    // An inactive advertiser's month is not retried: 409, activate it instead.
    problem(
        &api.change("/backfill/advertisers/61/months/2026-11/retry", None)
            .await?,
        409,
    );
    // A required body: whitespace, nothing, or not JSON is refused; `{}` is the schedule's input.
    let execute = "/jobs/daily-rollup/executions";
    problem(&api.change(execute, Some("  \n ")).await?, 422);
    problem(
        &api.call("POST", execute, Some("ops:admin"), None, Some("k-none"))
            .await?,
        422,
    );
    problem(&api.change(execute, Some("{")).await?, 422);
    problem(
        &api.change(execute, Some(r#"{"date": 20261120}"#)).await?,
        422,
    );
    problem(
        &api.change(execute, Some(r#"{"dryrun": true}"#)).await?,
        422,
    );
    problem(
        &api.change(execute, Some(r#"{"date": "2026-02-30"}"#))
            .await?,
        422,
    );
    // Statistics over at most 366 days (2025 has 365); a week not analysed is 404.
    problem(
        &api.get("/jobs/statistics?from=2025-01-01T00:00:00Z&to=2026-01-03T00:00:00Z")
            .await?,
        422,
    );
    ok(&api
        .get("/jobs/statistics?from=2025-01-01T00:00:00Z&to=2026-01-02T00:00:00Z")
        .await?);
    problem(&api.get("/insights/weekly?week=2020-01-06").await?, 404);
    // A list's page is 50 without a limit: 60 advertisers, a page of 50 and a cursor.
    sqlx::query(
        "INSERT INTO advertisers (advertiser_id, name, advertiser_type, backfill_completed)
         SELECT 7000 + i, 'a' || i, 'EXISTING', true FROM generate_series(1, 60) AS i",
    )
    .execute(&api.cdp.db.pool)
    .await?;
    let page = api.get("/backfill/advertisers").await?;
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(50));
    assert!(page.body["next_cursor"].is_string());
    // An idempotency key's answer is kept a day; a claim whose request died is taken over
    // after a minute.
    let trigger = "/backfill/advertisers/61/activate";
    let first = api
        .call("POST", trigger, Some("ops:admin"), None, Some("kept-a-day"))
        .await?;
    ok(&first);
    assert!(!first.replayed());
    let again = api
        .call("POST", trigger, Some("ops:admin"), None, Some("kept-a-day"))
        .await?;
    assert!(again.replayed(), "{again:?}");
    sqlx::query(
        "UPDATE admin_idempotency SET claimed_at = now() - interval '25 hours'
          WHERE idempotency_key = 'kept-a-day'",
    )
    .execute(&api.cdp.db.pool)
    .await?;
    let after_a_day = api
        .call("POST", trigger, Some("ops:admin"), None, Some("kept-a-day"))
        .await?;
    ok(&after_a_day);
    assert!(!after_a_day.replayed(), "performed again after a day");
    sqlx::query(
        "INSERT INTO admin_idempotency (subject, idempotency_key, fingerprint, claimed_at)
         VALUES ('ops-ops-admin', 'died', 'x', now() - interval '61 seconds')",
    )
    .execute(&api.cdp.db.pool)
    .await?;
    let taken_over = api
        .call("POST", trigger, Some("ops:admin"), None, Some("died"))
        .await?;
    ok(&taken_over);
    assert!(!taken_over.replayed());
    Ok(())
}
