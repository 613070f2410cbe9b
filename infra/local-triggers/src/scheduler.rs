//! EventBridge Scheduler's `ScheduleV2` targets, locally, with Lambda's asynchronous
//! invocation behind them.
//!
//! Each schedule fires at its expression's times in its time zone, with the template's
//! `Input` and the `<aws.scheduler.*>` context attributes substituted. Scheduler hands the
//! event to Lambda asynchronously: a delivery that cannot reach the function is retried by
//! the schedule's `RetryPolicy`, then sent to its `DeadLetterConfig` queue; a run that fails
//! is retried by the function's `EventInvokeConfig` (`MaximumRetryAttempts`, Lambda waiting
//! about a minute, then two), then recorded on its on-failure destination in Lambda's
//! invocation-record shape.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::invoke::{Invocation, Invoker};
use crate::report::{Delivery, Tally};
use crate::template::ScheduleSource;

/// Where the emulator says it is: the ARNs it writes into events and records.
#[derive(Debug, Clone)]
pub struct Account {
    pub region: String,
    pub account_id: String,
}

/// How long retries wait. Lambda and Scheduler wait minutes; a local run may say less.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Before each of the function's asynchronous retries (Lambda: about 1 and 2 minutes).
    pub run_retries: Vec<Duration>,
    /// Before each of Scheduler's delivery retries.
    pub delivery_retry: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            run_retries: vec![Duration::from_secs(60), Duration::from_secs(120)],
            delivery_retry: Duration::from_secs(60),
        }
    }
}

/// What firing once came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Fired {
    /// The run succeeded, at this attempt (1 is the first).
    Ran { attempt: u32, returned: Value },
    /// Every attempt failed; the invocation record went to the on-failure destination, if
    /// there is one.
    Failed {
        attempts: u32,
        error: String,
        parked: bool,
    },
    /// The function could not be reached within the retry policy; the event went to the
    /// schedule's dead-letter queue, if there is one.
    Undelivered { error: String, parked: bool },
}

/// The event Scheduler sends for a firing at `at`: the template's `Input` with the context
/// attributes substituted, or `{}` without one.
pub fn payload(
    source: &ScheduleSource,
    at: DateTime<Utc>,
    attempt: u32,
    account: &Account,
) -> Value {
    let Some(input) = &source.input else {
        return json!({});
    };
    let schedule_arn = format!(
        "arn:aws:scheduler:{}:{}:schedule/default/{}",
        account.region, account.account_id, source.name
    );
    let text = input
        .replace(
            "<aws.scheduler.scheduled-time>",
            &at.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
        .replace("<aws.scheduler.schedule-arn>", &schedule_arn)
        .replace("<aws.scheduler.attempt-number>", &attempt.to_string())
        .replace(
            "<aws.scheduler.execution-id>",
            &format!("{}-{}", source.name, at.timestamp()),
        );
    // Scheduler sends the input as the payload; a Lambda target takes JSON.
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Fires `source` once, as if at `at`, with the retries the template configures.
pub async fn fire(
    source: &ScheduleSource,
    at: DateTime<Utc>,
    invoker: &Invoker,
    sqs: &aws_sdk_sqs::Client,
    account: &Account,
    backoff: &Backoff,
) -> anyhow::Result<(Fired, Tally)> {
    let mut tally = Tally::default();
    // Lambda's run attempts resend the event Scheduler delivered; Scheduler's attempt number
    // counts its own deliveries.
    let mut attempt = 1;
    let mut delivery_failures = 0;
    let first = std::time::Instant::now();
    loop {
        let event = payload(source, at, delivery_failures + 1, account);
        let (invocation, took) = invoker.invoke(&source.function, &event).await;
        let delivery = Delivery {
            function: &source.function,
            source: &source.event,
            records: 1,
            failed: usize::from(invocation.failed()),
            invocation: &invocation,
            took,
        };
        delivery.print();
        tally.record(&delivery);
        // Not reached at all: Scheduler's delivery retries. Reached and failed: Lambda's.
        let (error, delivered) = match invocation {
            Invocation::Returned(returned) => return Ok((Fired::Ran { attempt, returned }, tally)),
            Invocation::Failed(error) => (error, true),
            Invocation::Unreachable(error) => (error, false),
        };
        if !delivered {
            delivery_failures += 1;
            if delivery_failures > source.delivery.attempts
                || first.elapsed() >= source.delivery.max_age
            {
                let parked = park(
                    sqs,
                    source.delivery.dead_letter_url.as_deref(),
                    &json!({
                        "schedule": source.name,
                        "input": event,
                        "error": error,
                        "retryAttempts": delivery_failures - 1,
                    }),
                )
                .await?;
                return Ok((Fired::Undelivered { error, parked }, tally));
            }
            tokio::time::sleep(backoff.delivery_retry).await;
            continue;
        }
        if attempt > source.invoke.attempts || first.elapsed() >= source.invoke.max_age {
            let record = invocation_record(source, account, &event, &error, attempt);
            let parked = park(sqs, source.invoke.dead_letter_url.as_deref(), &record).await?;
            return Ok((
                Fired::Failed {
                    attempts: attempt,
                    error,
                    parked,
                },
                tally,
            ));
        }
        let wait = backoff
            .run_retries
            .get(attempt as usize - 1)
            .or(backoff.run_retries.last())
            .copied()
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Lambda's record of an asynchronous invocation that ran out of retries, as its on-failure
/// destination receives it.
pub fn invocation_record(
    source: &ScheduleSource,
    account: &Account,
    request: &Value,
    error: &str,
    attempts: u32,
) -> Value {
    let body = error.split_once(": ").map_or(error, |(_, body)| body);
    let response: Value = serde_json::from_str(body)
        .unwrap_or_else(|_| json!({ "errorType": "Unhandled", "errorMessage": error }));
    json!({
        "version": "1.0",
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "requestContext": {
            "requestId": format!("{}-{}", source.name, Utc::now().timestamp_millis()),
            "functionArn": format!(
                "arn:aws:lambda:{}:{}:function:{}:$LATEST",
                account.region, account.account_id, source.function
            ),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": request,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": response,
    })
}

/// Sends `body` to the queue at `url`; false when there is none.
async fn park(sqs: &aws_sdk_sqs::Client, url: Option<&str>, body: &Value) -> anyhow::Result<bool> {
    let Some(url) = url else {
        return Ok(false);
    };
    sqs.send_message()
        .queue_url(url)
        .message_body(body.to_string())
        .send()
        .await
        .map_err(|err| anyhow::anyhow!("send to {url}: {err}"))?;
    Ok(true)
}

/// Fires `source` at each of its times from now on. Each firing runs on its own, as
/// Scheduler's do: one whose retries outlast the schedule's period does not hold up the next.
pub async fn run(
    source: &ScheduleSource,
    invoker: &Invoker,
    sqs: &aws_sdk_sqs::Client,
    account: &Account,
    backoff: &Backoff,
) -> anyhow::Result<Tally> {
    let started = Utc::now();
    let mut tally = Tally::default();
    let mut after = started;
    eprintln!(
        "schedule-source: {} <- {} ({})",
        source.function, source.schedule.expression, source.schedule.zone
    );
    let mut firing = futures::stream::FuturesUnordered::new();
    loop {
        let next = source.schedule.next_after(after, started);
        if next.is_none() && firing.is_empty() {
            return Ok(tally);
        }
        let due = next.map_or(Duration::MAX, |at| {
            (at - Utc::now()).to_std().unwrap_or_default()
        });
        tokio::select! {
            Some(done) = futures::StreamExt::next(&mut firing), if !firing.is_empty() => {
                let (_, fired): (Fired, Tally) = done?;
                tally = tally + fired;
            }
            () = tokio::time::sleep(due), if next.is_some() => {
                if let Some(at) = next {
                    firing.push(fire(source, at, invoker, sqs, account, backoff));
                    after = at;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::Schedule;
    use crate::template::Retries;

    fn source(input: Option<&str>) -> ScheduleSource {
        let retries = Retries {
            attempts: 2,
            max_age: Duration::from_secs(3600),
            dead_letter_url: None,
        };
        ScheduleSource {
            function: "daily-rollup".to_owned(),
            event: "Nightly".to_owned(),
            name: "daily-rollup-Nightly".to_owned(),
            schedule: Schedule::parse("cron(0 2 * * ? *)", "Asia/Seoul").expect("cron"),
            input: input.map(str::to_owned),
            delivery: retries.clone(),
            invoke: retries,
        }
    }

    fn account() -> Account {
        Account {
            region: "ap-northeast-2".to_owned(),
            account_id: "123456789012".to_owned(),
        }
    }

    #[test]
    fn the_context_attributes_are_substituted_into_the_input() {
        let at: DateTime<Utc> = "2026-11-20T17:00:00Z".parse().expect("time");
        let input = r#"{"scheduled_time": "<aws.scheduler.scheduled-time>", "n": <aws.scheduler.attempt-number>, "arn": "<aws.scheduler.schedule-arn>"}"#;
        let event = payload(&source(Some(input)), at, 2, &account());
        assert_eq!(event["scheduled_time"], "2026-11-20T17:00:00Z");
        assert_eq!(event["n"], 2);
        assert_eq!(
            event["arn"],
            "arn:aws:scheduler:ap-northeast-2:123456789012:schedule/default/daily-rollup-Nightly"
        );
        assert_eq!(payload(&source(None), at, 1, &account()), json!({}));
    }

    #[test]
    fn the_invocation_record_has_lambdas_shape() {
        let request = json!({"scheduled_time": "2026-11-20T17:00:00Z"});
        let error = r#"200 OK: {"errorType":"WorkerError","errorMessage":"database down"}"#;
        let record = invocation_record(&source(None), &account(), &request, error, 3);
        assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(
            record["requestContext"]["functionArn"],
            "arn:aws:lambda:ap-northeast-2:123456789012:function:daily-rollup:$LATEST"
        );
        assert_eq!(record["requestPayload"], request);
        assert_eq!(record["responsePayload"]["errorMessage"], "database down");
        assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    }
}
