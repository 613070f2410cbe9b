//! The local AWS endpoint: a test's own queues and bucket, and the stack's resources.

use std::collections::HashMap;

use anyhow::Context as _;

use crate::{env_or, repo_root, unique};

/// AWS resources of one test: request/complete queues (with DLQs) and an image bucket.
pub struct TestAws {
    pub sdk: aws_config::SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub prefix: String,
    pub bucket: String,
    pub queue_urls: HashMap<String, String>,
}

pub const WEBTOON_QUEUES: [&str; 4] = [
    "webtoon-create-request",
    "webtoon-update-request",
    "webtoon-create-complete",
    "webtoon-update-complete",
];

impl TestAws {
    pub async fn new() -> anyhow::Result<Self> {
        let endpoint = env_or("AWS_ENDPOINT_URL", "http://127.0.0.1:5000");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(env_or(
                "AWS_REGION",
                "ap-northeast-2",
            )))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "local-stack",
            ))
            .load()
            .await;
        let sqs = adapters::aws::sqs(&sdk);
        let s3 = adapters::aws::s3(&sdk);
        let prefix = unique("t");
        let bucket = format!("{prefix}-images");
        s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::ApNortheast2)
                    .build(),
            )
            .send()
            .await
            .context("create test bucket (is moto up? make up)")?;
        let mut queue_urls = HashMap::new();
        for queue in WEBTOON_QUEUES {
            let name = format!("{prefix}-{queue}");
            let url = sqs
                .create_queue()
                .queue_name(&name)
                .send()
                .await?
                .queue_url
                .context("queue URL")?;
            queue_urls.insert(queue.to_owned(), url);
        }
        Ok(Self {
            sdk,
            sqs,
            s3,
            prefix,
            bucket,
            queue_urls,
        })
    }

    pub fn queue_url(&self, queue: &str) -> &str {
        self.queue_urls
            .get(queue)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Receives (and deletes) every message now on a queue, bodies parsed as JSON.
    pub async fn drain(&self, queue: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        self.drain_bodies(queue)
            .await?
            .iter()
            .map(|body| Ok(serde_json::from_str(body)?))
            .collect()
    }

    /// Receives (and deletes) every message now on a queue, bodies as sent.
    pub async fn drain_bodies(&self, queue: &str) -> anyhow::Result<Vec<String>> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(self.queue_url(queue))
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(bodies);
            }
            for message in messages {
                bodies.push(message.body().unwrap_or_default().to_owned());
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(self.queue_url(queue))
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }

    /// A queue `<prefix>-<name>` with a three-second visibility timeout (a message in flight
    /// longer than that, on a loaded machine, would rightly be delivered again) and its
    /// dead-letter queue `<name>-dlq` after `max_receives`; both are known by those names.
    pub async fn queue_with_dlq(&mut self, name: &str, max_receives: u32) -> anyhow::Result<()> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let dlq_name = format!("{name}-dlq");
        let dlq = self.create_queue(&dlq_name, []).await?;
        let dlq_arn = local_triggers::sqs::queue_arn(&self.sqs, &dlq).await?;
        let redrive =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives});
        let attributes = [
            (QueueAttributeName::VisibilityTimeout, "3".to_owned()),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ];
        self.create_queue(name, attributes).await?;
        Ok(())
    }

    async fn create_queue(
        &mut self,
        name: &str,
        attributes: impl IntoIterator<Item = (aws_sdk_sqs::types::QueueAttributeName, String)>,
    ) -> anyhow::Result<String> {
        let url = self
            .sqs
            .create_queue()
            .queue_name(format!("{}-{name}", self.prefix))
            .set_attributes(Some(attributes.into_iter().collect()))
            .send()
            .await?
            .queue_url
            .context("queue URL")?;
        self.queue_urls.insert(name.to_owned(), url.clone());
        Ok(url)
    }

    /// An SNS topic `<prefix>-<name>` with a queue of the same name subscribed to it (raw
    /// delivery), so what is published can be read back with [`TestAws::drain`]`(name)`.
    /// Returns the topic's ARN.
    pub async fn subscribed_topic(&mut self, name: &str) -> anyhow::Result<String> {
        let sns = adapters::aws::sns(&self.sdk);
        let topic_arn = sns
            .create_topic()
            .name(format!("{}-{name}", self.prefix))
            .send()
            .await?
            .topic_arn
            .context("topic ARN")?;
        let queue_url = self.create_queue(name, []).await?;
        let queue_arn = local_triggers::sqs::queue_arn(&self.sqs, &queue_url).await?;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await?;
        Ok(topic_arn)
    }

    /// The bytes of an object in the test's bucket.
    pub async fn object(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await?;
        Ok(object.body.collect().await?.to_vec())
    }

    pub async fn object_keys(&self) -> anyhow::Result<Vec<String>> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await?;
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// An S3 client for the local AWS endpoint, built without awaiting anything.
pub fn local_s3() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(env_or("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"))
        .region(aws_sdk_s3::config::Region::new(env_or(
            "AWS_REGION",
            "ap-northeast-2",
        )))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "local-stack",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The local name of a resource of template.yaml, as `make up` provisioned it.
pub fn stack_resource(logical_id: &str) -> anyhow::Result<String> {
    let path = repo_root().join(".stack/resources.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("read {} (run make up)", path.display()))?;
    let resources: HashMap<String, serde_json::Value> = serde_json::from_str(&text)?;
    resources
        .get(logical_id)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{logical_id} is not in {}", path.display()))
}
