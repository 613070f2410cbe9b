//! The event sources a SAM template declares, read from its JSON form.
//!
//! The template is the one that deploys: each `AWS::Serverless::Function`'s `Events` of type
//! `SQS`, `MSK` and `ScheduleV2`, with the properties Lambda and EventBridge Scheduler honour.
//! `Ref` and `Fn::GetAtt` are resolved through the stack's resources: a JSON object from logical
//! id to physical id (a queue's URL, a topic's ARN), which is what a local provisioner knows of
//! the stack it made (`make up` writes `.stack/resources.json`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::cron::Schedule;

/// One function's SQS event.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsSource {
    /// The binary `cargo lambda watch` runs: the last segment of the function's `CodeUri`.
    pub function: String,
    /// The event's name in the template.
    pub event: String,
    pub queue_url: String,
    /// Lambda's default for SQS: 10.
    pub batch_size: usize,
    pub window: Duration,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency`: invocations in flight at once (Lambda's minimum, 2,
    /// when unset is replaced by 5 pollers' worth; locally, 5).
    pub max_concurrency: usize,
}

/// One function's MSK event.
#[derive(Debug, Clone, PartialEq)]
pub struct MskSource {
    pub function: String,
    pub event: String,
    pub topics: Vec<String>,
    pub group: String,
    pub batch_size: usize,
    pub window: Duration,
    /// `TRIM_HORIZON` reads a new group's topics from the start, `LATEST` from the end.
    pub from_start: bool,
    /// What a failed batch goes through.
    pub on_error: MskErrorHandling,
}

/// The mapping's error handling in provisioned mode, as the template configures it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MskErrorHandling {
    /// `MaximumRetryAttempts`; `None` (unset or -1) retries until the batch passes.
    pub max_retries: Option<u32>,
    /// `MaximumRecordAgeInSeconds`; `None` (unset or -1) keeps records however old.
    pub max_record_age: Option<Duration>,
    /// `BisectBatchOnFunctionError`: a failed batch is split in two and each half retried.
    pub bisect: bool,
    /// `DestinationConfig.OnFailure`: the queue that takes the record of a discarded batch.
    pub on_failure_url: Option<String>,
}

/// What happens to a scheduled invocation that failed (`RetryPolicy`, `DeadLetterConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    pub attempts: u32,
    pub max_age: Duration,
    /// The dead-letter queue's URL, if any.
    pub dead_letter_url: Option<String>,
}

/// One function's `ScheduleV2` event.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSource {
    pub function: String,
    pub event: String,
    /// The schedule's name as Scheduler would report it: `<function>-<event>`.
    pub name: String,
    pub schedule: Schedule,
    /// The template's `Input`, before the `<aws.scheduler.*>` attributes are substituted.
    pub input: Option<String>,
    /// Scheduler's delivery retries, then its dead-letter queue.
    pub delivery: Retries,
    /// The function's own asynchronous retries (`EventInvokeConfig`), then its on-failure
    /// destination.
    pub invoke: Retries,
}

/// Every source of every function in the template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    pub sqs: Vec<SqsSource>,
    pub msk: Vec<MskSource>,
    pub schedules: Vec<ScheduleSource>,
}

impl Sources {
    /// Reads the template (JSON) and the stack's resources (JSON, logical id to physical id).
    pub fn read(template: &Path, resources: &Path) -> anyhow::Result<Self> {
        let template = read_json(template)?;
        let resources: HashMap<String, String> = serde_json::from_value(read_json(resources)?)
            .with_context(|| {
                format!(
                    "{}: expected {{\"LogicalId\": \"physical id\"}}",
                    resources.display()
                )
            })?;
        Self::from_json(&template, &resources)
    }

    pub fn from_json(
        template: &Value,
        resources: &HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let stack = Stack { resources };
        let mut sources = Self::default();
        let functions = template["Resources"]
            .as_object()
            .context("the template has no Resources")?;
        for (logical, resource) in functions {
            if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
                continue;
            }
            let props = &resource["Properties"];
            let function = props["CodeUri"]
                .as_str()
                .and_then(|uri| uri.trim_end_matches('/').rsplit('/').next())
                .with_context(|| format!("{logical}: no CodeUri to name its binary by"))?;
            let Some(events) = props["Events"].as_object() else {
                continue;
            };
            for (event, declared) in events {
                let p = &declared["Properties"];
                let at = || format!("{logical}.Events.{event}");
                match declared["Type"].as_str() {
                    Some("SQS") => sources.sqs.push(SqsSource {
                        function: function.to_owned(),
                        event: event.clone(),
                        queue_url: stack.resolve(&p["Queue"]).with_context(at)?,
                        batch_size: count(&p["BatchSize"], 10),
                        window: seconds(&p["MaximumBatchingWindowInSeconds"], 0),
                        report_item_failures: lists(
                            &p["FunctionResponseTypes"],
                            "ReportBatchItemFailures",
                        ),
                        max_concurrency: count(&p["ScalingConfig"]["MaximumConcurrency"], 5),
                    }),
                    Some("MSK") => sources.msk.push(MskSource {
                        function: function.to_owned(),
                        event: event.clone(),
                        topics: p["Topics"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect(),
                        group: p["ConsumerGroupId"]
                            .as_str()
                            .with_context(|| format!("{}: no ConsumerGroupId", at()))?
                            .to_owned(),
                        // Lambda's defaults for MSK: 100 records, no batching window.
                        batch_size: count(&p["BatchSize"], 100),
                        window: seconds(&p["MaximumBatchingWindowInSeconds"], 0),
                        from_start: p["StartingPosition"].as_str() == Some("TRIM_HORIZON"),
                        on_error: MskErrorHandling {
                            max_retries: p["MaximumRetryAttempts"]
                                .as_i64()
                                .and_then(|n| u32::try_from(n).ok()),
                            max_record_age: p["MaximumRecordAgeInSeconds"]
                                .as_i64()
                                .and_then(|n| u64::try_from(n).ok())
                                .map(Duration::from_secs),
                            bisect: p["BisectBatchOnFunctionError"].as_bool().unwrap_or(false),
                            on_failure_url: stack
                                .optional(&p["DestinationConfig"]["OnFailure"]["Destination"])
                                .with_context(at)?,
                        },
                    }),
                    Some("ScheduleV2") => {
                        let expression = p["ScheduleExpression"]
                            .as_str()
                            .with_context(|| format!("{}: no ScheduleExpression", at()))?;
                        let zone = p["ScheduleExpressionTimezone"].as_str().unwrap_or("UTC");
                        let invoke_config = &props["EventInvokeConfig"];
                        sources.schedules.push(
                            ScheduleSource {
                                function: function.to_owned(),
                                event: event.clone(),
                                name: format!("{function}-{event}"),
                                schedule: Schedule::parse(expression, zone).with_context(at)?,
                                input: p["Input"].as_str().map(str::to_owned),
                                // Scheduler's defaults: 185 attempts over 24 hours.
                                delivery: Retries {
                                    attempts: count(&p["RetryPolicy"]["MaximumRetryAttempts"], 185)
                                        as u32,
                                    max_age: seconds(
                                        &p["RetryPolicy"]["MaximumEventAgeInSeconds"],
                                        86_400,
                                    ),
                                    dead_letter_url: stack
                                        .optional(&p["DeadLetterConfig"]["Arn"])
                                        .with_context(at)?,
                                },
                                // Lambda's asynchronous defaults: 2 retries within 6 hours.
                                invoke:
                                    Retries {
                                        attempts: count(&invoke_config["MaximumRetryAttempts"], 2)
                                            as u32,
                                        max_age: seconds(
                                            &invoke_config["MaximumEventAgeInSeconds"],
                                            21_600,
                                        ),
                                        dead_letter_url:
                                            stack
                                                .optional(
                                                    &invoke_config["DestinationConfig"]["OnFailure"]
                                                        ["Destination"],
                                                )
                                                .with_context(at)?,
                                    },
                            },
                        );
                    }
                    _ => {}
                }
            }
        }
        Ok(sources)
    }

    /// Only `function`'s sources.
    pub fn only(mut self, function: &str) -> Self {
        self.sqs.retain(|s| s.function == function);
        self.msk.retain(|s| s.function == function);
        self.schedules.retain(|s| s.function == function);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.sqs.is_empty() && self.msk.is_empty() && self.schedules.is_empty()
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("read {} (for this project: run make up)", path.display()))?;
    serde_json::from_str(&raw).with_context(|| format!("parse {} as JSON", path.display()))
}

fn count(value: &Value, default: u64) -> usize {
    value.as_u64().unwrap_or(default) as usize
}

fn seconds(value: &Value, default: u64) -> Duration {
    Duration::from_secs(value.as_u64().unwrap_or(default))
}

fn lists(value: &Value, wanted: &str) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item.as_str() == Some(wanted)))
}

/// The deployed stack's physical ids.
struct Stack<'a> {
    resources: &'a HashMap<String, String>,
}

impl Stack<'_> {
    /// A queue named by `Ref`, `Fn::GetAtt [Logical, Arn|QueueUrl]`, a URL or an ARN.
    fn resolve(&self, value: &Value) -> anyhow::Result<String> {
        let logical = match value {
            Value::String(text) => return Ok(text.clone()),
            Value::Object(map) => match (map.get("Ref"), map.get("Fn::GetAtt")) {
                (Some(Value::String(logical)), _) => logical.as_str(),
                (_, Some(Value::Array(parts))) => parts
                    .first()
                    .and_then(Value::as_str)
                    .context("Fn::GetAtt without a logical id")?,
                _ => bail!("cannot resolve {value}: expected Ref or Fn::GetAtt"),
            },
            _ => bail!("cannot resolve {value}"),
        };
        self.resources
            .get(logical)
            .cloned()
            .with_context(|| format!("{logical} is not among the stack's resources"))
    }

    fn optional(&self, value: &Value) -> anyhow::Result<Option<String>> {
        if value.is_null() {
            return Ok(None);
        }
        self.resolve(value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_kind_of_source_is_read_with_lambdas_defaults() -> anyhow::Result<()> {
        let template = json!({"Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Worker": {"Type": "AWS::Serverless::Function", "Properties": {
                "CodeUri": "functions/worker/",
                "EventInvokeConfig": {"MaximumRetryAttempts": 1,
                    "DestinationConfig": {"OnFailure": {"Type": "SQS",
                        "Destination": {"Fn::GetAtt": ["Parked", "Arn"]}}}},
                "Events": {
                    "Requests": {"Type": "SQS", "Properties": {
                        "Queue": {"Fn::GetAtt": ["Queue", "Arn"]},
                        "FunctionResponseTypes": ["ReportBatchItemFailures"]}},
                    "Stream": {"Type": "MSK", "Properties": {
                        "Topics": ["t"], "ConsumerGroupId": "g",
                        "StartingPosition": "TRIM_HORIZON"}},
                    "Nightly": {"Type": "ScheduleV2", "Properties": {
                        "ScheduleExpression": "cron(0 2 * * ? *)",
                        "ScheduleExpressionTimezone": "Asia/Seoul",
                        "Input": "{\"t\": \"<aws.scheduler.scheduled-time>\"}",
                        "RetryPolicy": {"MaximumRetryAttempts": 3}}},
                    "Api": {"Type": "Api"}}}}}});
        let resources = HashMap::from([
            ("Queue".to_owned(), "http://aws/1/queue".to_owned()),
            ("Parked".to_owned(), "http://aws/1/parked".to_owned()),
        ]);
        let sources = Sources::from_json(&template, &resources)?;
        let sqs = &sources.sqs[0];
        assert_eq!(
            (sqs.function.as_str(), sqs.queue_url.as_str()),
            ("worker", "http://aws/1/queue")
        );
        assert_eq!((sqs.batch_size, sqs.max_concurrency), (10, 5));
        assert!(sqs.report_item_failures);
        let msk = &sources.msk[0];
        assert_eq!((msk.batch_size, msk.from_start), (100, true));
        assert_eq!(msk.on_error, MskErrorHandling::default());
        let nightly = &sources.schedules[0];
        assert_eq!(nightly.name, "worker-Nightly");
        assert_eq!(nightly.delivery.attempts, 3);
        assert_eq!(nightly.delivery.dead_letter_url, None);
        assert_eq!(nightly.invoke.attempts, 1);
        assert_eq!(
            nightly.invoke.dead_letter_url.as_deref(),
            Some("http://aws/1/parked")
        );
        assert!(Sources::from_json(&template, &HashMap::new()).is_err());
        assert!(sources.only("other").is_empty());
        Ok(())
    }
}
