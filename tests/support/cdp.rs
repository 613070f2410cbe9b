//! The CDP backfill's fixture: a database, bucket, jobs queue (with its DLQ) and operators'
//! topic of the test's own, the orchestrator's and the worker's dependencies on them, and the
//! SQS source's part played by hand: receive the jobs, hand them to the worker as Lambda's
//! event, delete what it took.

use std::collections::HashMap;

use adapters::backfill::Backfill;
use adapters::jobs::Reporter;
use adapters::outbox::Outbox;
use anyhow::Context as _;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::NaiveDate;
use domain::backfill::Job;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{TestAws, TestDb};

pub struct Cdp {
    pub db: TestDb,
    pub aws: TestAws,
    pub operators_topic: String,
    pub queue_arn: String,
}

impl Cdp {
    pub async fn new() -> anyhow::Result<Self> {
        let db = TestDb::new().await?;
        let mut aws = TestAws::new().await?;
        aws.queue_with_dlq("cdp-jobs", 3).await?;
        let operators_topic = aws.subscribed_topic("operators").await?;
        let queue_arn = local_triggers::sqs::queue_arn(&aws.sqs, aws.queue_url("cdp-jobs")).await?;
        Ok(Self {
            db,
            aws,
            operators_topic,
            queue_arn,
        })
    }

    pub fn backfill(&self, pool: PgPool) -> Backfill {
        let outbox = Outbox::new(
            pool.clone(),
            adapters::aws::sns(&self.aws.sdk),
            adapters::backfill::PRODUCER,
            self.operators_topic.clone(),
        );
        Backfill::new(
            pool,
            self.aws.sqs.clone(),
            self.aws.queue_url("cdp-jobs"),
            outbox,
        )
    }

    pub fn orchestrator(&self) -> cdp_orchestrator::Deps {
        cdp_orchestrator::Deps {
            reporter: Reporter {
                db: self.db.pool.clone(),
                sns: adapters::aws::sns(&self.aws.sdk),
                topic_arn: self.operators_topic.clone(),
            },
            backfill: self.backfill(self.db.pool.clone()),
        }
    }

    /// The worker on `pool`, writing to `bucket`.
    pub fn worker_on(&self, pool: PgPool, bucket: &str) -> cdp_worker::Deps {
        cdp_worker::Deps {
            db: pool.clone(),
            s3: self.aws.s3.clone(),
            bucket: bucket.to_owned(),
            backfill: self.backfill(pool),
            limits: cdp_worker::Limits {
                chunk_rows: 1_000,
                ..cdp_worker::Limits::default()
            },
            concurrency: 4,
        }
    }

    pub fn worker(&self) -> cdp_worker::Deps {
        self.worker_on(self.db.pool.clone(), &self.aws.bucket)
    }

    /// One orchestrator run of `task` (`tick` or `clean_up`); returns its summary.
    pub async fn run(&self, task: &str) -> anyhow::Result<Value> {
        Ok(cdp_orchestrator::handle(json!({ "task": task }), &self.orchestrator()).await?)
    }

    /// An advertiser of `kind` (NEW or EXISTING) with one campaign.
    pub async fn advertiser(&self, id: i64, kind: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO advertisers (advertiser_id, name, advertiser_type, backfill_completed)
             VALUES ($1, 'advertiser ' || $1, $2, $2 = 'EXISTING')",
        )
        .bind(id)
        .bind(kind)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Receives (and deletes) every visible jobs message.
    pub async fn take_jobs(&self) -> anyhow::Result<Vec<SqsMessage>> {
        let url = self.aws.queue_url("cdp-jobs");
        let mut messages = Vec::new();
        loop {
            let received = self
                .aws
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await?;
            let batch = received.messages.unwrap_or_default();
            if batch.is_empty() {
                return Ok(messages);
            }
            for message in batch {
                if let Some(handle) = message.receipt_handle() {
                    self.aws
                        .sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
                messages.push(self.message(
                    message.message_id().unwrap_or_default(),
                    message.body().unwrap_or_default(),
                ));
            }
        }
    }

    /// A jobs message as Lambda's SQS event carries it.
    pub fn message(&self, id: &str, body: &str) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.to_owned());
        message.body = Some(body.to_owned());
        message.event_source_arn = Some(self.queue_arn.clone());
        message.attributes =
            HashMap::from([("ApproximateReceiveCount".to_owned(), "1".to_owned())]);
        message
    }

    /// The message of a month as it is queued now (its current token), as SQS would deliver it
    /// once its delay is over.
    pub async fn queued_job(
        &self,
        advertiser: i64,
        month: NaiveDate,
    ) -> anyhow::Result<SqsMessage> {
        let token: uuid::Uuid = sqlx::query_scalar(
            "SELECT claim_token FROM cdp_months WHERE advertiser_id = $1 AND month = $2 AND state = 'QUEUED'",
        )
        .bind(advertiser)
        .bind(month)
        .fetch_one(&self.db.pool)
        .await
        .with_context(|| format!("month {month} of {advertiser} is not queued"))?;
        let job = Job {
            advertiser_id: advertiser,
            month,
            token,
        };
        Ok(self.message(&crate::unique("m"), &serde_json::to_string(&job)?))
    }

    /// Runs the worker on `messages`, as one SQS event.
    pub async fn work(
        &self,
        deps: &cdp_worker::Deps,
        messages: Vec<SqsMessage>,
    ) -> SqsBatchResponse {
        let mut event = SqsEvent::default();
        event.records = messages;
        cdp_worker::handle(event, deps).await
    }

    /// Works the queue until it is empty (each month queues the next): returns the batches run.
    pub async fn work_until_empty(&self, deps: &cdp_worker::Deps) -> anyhow::Result<usize> {
        let mut batches = 0;
        loop {
            let jobs = self.take_jobs().await?;
            if jobs.is_empty() {
                return Ok(batches);
            }
            let response = self.work(deps, jobs).await;
            anyhow::ensure!(
                response.batch_item_failures.is_empty(),
                "jobs failed: {:?}",
                response.batch_item_failures
            );
            batches += 1;
        }
    }

    /// `(month, state, retry_count)` of an advertiser's months, oldest first.
    pub async fn months(&self, advertiser: i64) -> anyhow::Result<Vec<(NaiveDate, String, i32)>> {
        Ok(sqlx::query_as(
            "SELECT month, state, retry_count FROM cdp_months WHERE advertiser_id = $1 ORDER BY month",
        )
        .bind(advertiser)
        .fetch_all(&self.db.pool)
        .await?)
    }

    /// An object of the test's bucket, as bytes.
    pub async fn object(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let object = self
            .aws
            .s3
            .get_object()
            .bucket(&self.aws.bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("get {key}"))?;
        Ok(object.body.collect().await?.into_bytes().to_vec())
    }
}
