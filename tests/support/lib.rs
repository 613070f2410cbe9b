//! Test support: every test gets its own freshly migrated database, its own queues and bucket
//! in the local AWS endpoint, and (when it needs one) its own image server, so tests run in
//! parallel against the real stack without seeing each other. Addresses default to the local
//! stack (`make up`); the same environment variables override them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use aws_lambda_events::event::sqs::SqsEvent;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..12])
}

/// A database of its own for one test, copied from the migrated template.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub options: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> anyhow::Result<Self> {
        let admin_url = env_or(
            "TEST_ADMIN_DATABASE_URL",
            "postgres://postgres:postgres@127.0.0.1:5432/postgres",
        );
        let admin_options: PgConnectOptions = admin_url.parse()?;
        let mut admin = PgConnection::connect_with(&admin_options)
            .await
            .context("connect to PostgreSQL (is the stack up? make up)")?;
        drop_stale_databases(&mut admin).await?;
        let template = migrated_template(&mut admin, &admin_options).await?;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let name = format!("test_{secs}_{}", unique(""));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template}"
        )))
        .execute(&mut admin)
        .await?;
        let options = admin_options.database(&name);
        let pool = adapters::db::pool_with(&db_config(), options.clone());
        Ok(Self {
            pool,
            name,
            options,
        })
    }

    /// Every row of the webtoon tables as text, for "nothing changed" assertions.
    pub async fn snapshot(&self) -> anyhow::Result<Vec<String>> {
        let mut rows = Vec::new();
        for table in [
            "webtoons",
            "authors",
            "webtoon_authors",
            "genres",
            "webtoon_genres",
            "episodes",
            "webtoon_requests",
        ] {
            let sql = format!("SELECT '{table}: ' || t::text FROM {table} t ORDER BY t::text");
            let mut table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            rows.append(&mut table_rows);
        }
        Ok(rows)
    }

    pub async fn count(&self, sql: &'static str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }
}

pub fn db_config() -> adapters::config::DatabaseConfig {
    adapters::config::DatabaseConfig {
        source: adapters::config::DatabaseSource::Url(String::new().into()),
        max_connections: 4,
        statement_timeout: Duration::from_secs(5),
        acquire_timeout: Duration::from_secs(3),
        ssl_mode: sqlx::postgres::PgSslMode::Disable,
    }
}

/// The database every test database is copied from: migrated once per set of migrations (its
/// name carries their checksums), so a test's database is a file copy, not a run of every
/// migration. Built under a session advisory lock, so parallel tests and test processes build
/// it once; templates of other migration sets are dropped then.
async fn migrated_template(
    admin: &mut PgConnection,
    admin_options: &PgConnectOptions,
) -> anyhow::Result<String> {
    use std::hash::{DefaultHasher, Hash as _, Hasher as _};
    const LOCK: i64 = 0x07e5_70db;
    let migrator = adapters::db::migrator(&repo_root().join("infra/migrations")).await?;
    let mut hasher = DefaultHasher::new();
    for migration in migrator.iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    let name = format!("test_template_{:016x}", hasher.finish());
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut *admin)
        .await?;
    let built = async {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut *admin)
                .await?;
        if exists {
            return anyhow::Ok(());
        }
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'test\\_template\\_%'",
        )
        .fetch_all(&mut *admin)
        .await?;
        for other in others {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {other} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await?;
        }
        let building = format!("{name}_building");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .execute(&mut *admin)
            .await?;
        let pool = adapters::db::pool_with(&db_config(), admin_options.clone().database(&building));
        migrator.run(&pool).await?;
        pool.close().await;
        // Renamed only once migrated: a template that exists is complete.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {building} RENAME TO {name}"
        )))
        .execute(&mut *admin)
        .await?;
        Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *admin)
        .await?;
    built.map(|()| name)
}

/// Test databases older than an hour are leftovers of earlier runs.
async fn drop_stale_databases(admin: &mut PgConnection) -> anyhow::Result<()> {
    let cutoff = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() - 3600;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'")
            .fetch_all(&mut *admin)
            .await?;
    for name in names {
        let created = name
            .split('_')
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if created < cutoff {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
    Ok(())
}

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
                bodies.push(serde_json::from_str(message.body().unwrap_or("null"))?);
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

    /// An SNS topic `<prefix>-<name>` with a queue of the same name subscribed to it (raw
    /// delivery), so what is published can be read back with [`TestAws::drain`]`(name)`.
    /// Returns the topic's ARN.
    pub async fn subscribed_topic(&mut self, name: &str) -> anyhow::Result<String> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let full = format!("{}-{name}", self.prefix);
        let sns = adapters::aws::sns(&self.sdk);
        let topic_arn = sns
            .create_topic()
            .name(&full)
            .send()
            .await?
            .topic_arn
            .context("topic ARN")?;
        let queue_url = self
            .sqs
            .create_queue()
            .queue_name(&full)
            .send()
            .await?
            .queue_url
            .context("queue URL")?;
        let queue_arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .context("queue ARN")?;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await?;
        self.queue_urls.insert(name.to_owned(), queue_url);
        Ok(topic_arn)
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

/// A canned HTTP response served by [`ImageServer`].
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn png(body: Vec<u8>) -> Self {
        Self::ok("image/png", body)
    }

    pub fn ok(content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"no".to_vec(),
        }
    }

    pub fn redirect(location: &str) -> Self {
        Self {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 with fixed responses per path; unknown paths 404.
pub struct ImageServer {
    pub base: String,
    hits: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ImageServer {
    pub async fn start(routes: HashMap<String, Canned>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let routes = Arc::new(routes);
        let hits = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server_hits = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let routes = Arc::clone(&routes);
                let hits = Arc::clone(&server_hits);
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 8192];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    if let Ok(mut hits) = hits.lock() {
                        hits.push(path.clone());
                    }
                    let canned = routes
                        .get(&path)
                        .cloned()
                        .unwrap_or_else(|| Canned::status(404));
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        canned.status,
                        canned.body.len()
                    );
                    for (name, value) in &canned.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&canned.body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self { base, hits })
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .map(|hits| hits.iter().filter(|p| *p == path).count())
            .unwrap_or(0)
    }
}

/// An image server with the demo's sample PNGs under their file names.
pub async fn sample_image_server() -> anyhow::Result<ImageServer> {
    let mut routes = HashMap::new();
    for name in [
        "thumbnail.png",
        "cover.png",
        "episode-1.png",
        "episode-2.png",
    ] {
        routes.insert(format!("/{name}"), Canned::png(sample_png(name)?));
    }
    ImageServer::start(routes).await
}

/// One webtoon-sync test's world: its own database, AWS resources and image server.
pub struct Fixture {
    pub db: TestDb,
    pub aws: TestAws,
    pub images: ImageServer,
}

impl Fixture {
    /// With the sample images.
    pub async fn new() -> anyhow::Result<Self> {
        Self::with_images(sample_image_server().await?).await
    }

    pub async fn with_images(images: ImageServer) -> anyhow::Result<Self> {
        Ok(Self {
            db: TestDb::new().await?,
            aws: TestAws::new().await?,
            images,
        })
    }

    /// The function's dependencies, allowed to fetch from the loopback image server.
    pub fn deps(&self) -> anyhow::Result<webtoon_sync::Deps> {
        webtoon_deps(&self.db, &self.aws, &["127.0.0.1"])
    }

    /// A sample event from `events/`, aimed at this fixture's image server and queues.
    pub fn event(&self, file: &str) -> anyhow::Result<SqsEvent> {
        load_event(file, &self.images.base, &self.aws.prefix)
    }
}

/// The small PNGs the demo serves; tests serve the same bytes.
pub fn sample_png(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = repo_root().join("infra/local/images").join(name);
    std::fs::read(&path).with_context(|| format!("read {}", path.display()))
}

/// webtoon-sync's dependencies wired to this test's database, queues and bucket.
pub fn webtoon_deps(
    db: &TestDb,
    aws: &TestAws,
    allow_hosts: &[&str],
) -> anyhow::Result<webtoon_sync::Deps> {
    let policy = adapters::images::FetchPolicy {
        allow_hosts: allow_hosts.iter().map(|h| (*h).to_owned()).collect(),
        ..Default::default()
    };
    Ok(webtoon_sync::Deps {
        db: db.pool.clone(),
        sqs: aws.sqs.clone(),
        images: adapters::images::ImageStore::new(aws.s3.clone(), &aws.bucket),
        fetcher: adapters::images::ImageFetcher::new(&policy)?,
        queues: webtoon_sync::CompletionQueues {
            create_url: aws.queue_url("webtoon-create-complete").to_owned(),
            update_url: aws.queue_url("webtoon-update-complete").to_owned(),
        },
        concurrency: 4,
    })
}

/// Reads a sample event from `events/`, pointing its image URLs at `image_base` and its queue
/// ARNs at the test's own queues.
pub fn load_event(file: &str, image_base: &str, queue_prefix: &str) -> anyhow::Result<SqsEvent> {
    let path = repo_root().join("events").join(file);
    let raw = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let raw = raw
        .replace("http://127.0.0.1:8089", image_base)
        .replace(":webtoon-", &format!(":{queue_prefix}-webtoon-"));
    Ok(serde_json::from_str(&raw)?)
}

/// A copy of an event's records, renumbered so they look like separate deliveries.
pub fn redelivered(event: &SqsEvent, tag: &str) -> SqsEvent {
    let mut copy = event.clone();
    for record in &mut copy.records {
        record.message_id = record.message_id.as_ref().map(|id| format!("{id}-{tag}"));
    }
    copy
}

pub fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

/// One benchmark figure, as written to `target/bench/results.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    pub name: String,
    pub unit: String,
    pub value: f64,
    /// Figures measured beside this one, in the same unit (name → value).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub baselines: std::collections::BTreeMap<String, f64>,
}

/// Which benchmarks to run: those whose name contains a word given on the command line
/// (`cargo bench ... -- budget`), or all of them.
pub fn bench_filter() -> impl Fn(&str) -> bool {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    move |name| only.is_empty() || only.iter().any(|word| name.contains(word))
}

/// Merges results into `target/bench/results.json`, replacing entries of the same name, so
/// every benchmark of the project adds to one file that can be tracked from run to run.
pub fn record_bench(results: &[BenchResult]) -> anyhow::Result<PathBuf> {
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    let mut all: Vec<BenchResult> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|raw| serde_json::from_str(&raw).ok())
        .unwrap_or_default();
    all.retain(|old| results.iter().all(|new| new.name != old.name));
    all.extend(results.iter().cloned());
    all.sort_by(|a, b| a.name.cmp(&b.name));
    std::fs::write(&path, serde_json::to_string_pretty(&all)? + "\n")?;
    Ok(path)
}

pub fn kafka_brokers() -> String {
    env_or("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// A dead-letter producer for `consumer` on the local broker, with its ledger in `db` and the
/// local stack's dead-letter bucket for oversized records.
pub fn dead_letters(
    db: &sqlx::PgPool,
    consumer: &str,
) -> anyhow::Result<adapters::kafka::DeadLetters> {
    adapters::kafka::DeadLetters::new(
        &kafka_brokers(),
        db.clone(),
        local_s3(),
        stack_resource("DeadLetterBucket")?,
        consumer,
    )
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

/// Creates topics on the local broker (it does not create them on first use).
pub async fn create_topics(names: &[&str]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, 1, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("create topic {topic}: {code}"))?;
    }
    Ok(())
}

/// A record read back from a topic: payload and headers.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads a topic from the beginning until `expected` records arrived or `wait` passed.
pub async fn read_topic(
    topic: &str,
    expected: usize,
    wait: Duration,
) -> anyhow::Result<Vec<Consumed>> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::message::Headers as _;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("reader-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < expected {
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let message = message?;
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        let value = header
                            .value
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        (header.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(out)
}

/// Reads a sample MSK event from `events/`, renaming its topic (record keys included).
pub fn load_kafka_event(
    file: &str,
    topic: &str,
    renamed: &str,
) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
    let path = repo_root().join("events").join(file);
    let raw = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(serde_json::from_str(
        &raw.replace(&format!("\"{topic}"), &format!("\"{renamed}")),
    )?)
}

/// An MSK event carrying `values` on partition 0 of `topic`, from `first_offset` on, each
/// stamped `timestamp_ms`.
pub fn kafka_event(
    topic: &str,
    first_offset: i64,
    timestamp_ms: i64,
    values: &[String],
) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
    kafka_event_on(&[(topic, 0, first_offset, values)], timestamp_ms)
}

/// An MSK event carrying, for each (topic, partition, first offset, values), the values on that
/// partition from the offset on, each stamped `timestamp_ms`.
pub fn kafka_event_on(
    partitions: &[(&str, i32, i64, &[String])],
    timestamp_ms: i64,
) -> anyhow::Result<aws_lambda_events::event::kafka::KafkaEvent> {
    use base64::Engine as _;
    let mut records = serde_json::Map::new();
    for (topic, partition, first_offset, values) in partitions {
        let batch: Vec<_> = values
            .iter()
            .zip(*first_offset..)
            .map(|(value, offset)| {
                serde_json::json!({
                    "topic": topic, "partition": partition, "offset": offset,
                    "timestamp": timestamp_ms, "timestampType": "CREATE_TIME", "headers": [],
                    "value": base64::engine::general_purpose::STANDARD.encode(value),
                })
            })
            .collect();
        records.insert(format!("{topic}-{partition}"), batch.into());
    }
    Ok(serde_json::from_value(serde_json::json!({
        "eventSource": "aws:kafka",
        "records": records,
    }))?)
}

/// A TCP proxy in front of a server (PostgreSQL, say) that a test can cut: cutting drops every
/// open connection and refuses new ones until it is restored, as an outage would.
pub struct TcpProxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    pipes: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pipes: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, pipes) = (up.clone(), pipes.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection closed
                    }
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    if let Ok(mut pipes) = pipes.lock() {
                        pipes.push(pipe.abort_handle());
                    }
                }
            }
        });
        Ok(Self {
            port,
            up,
            pipes,
            accept,
        })
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut pipes) = self.pipes.lock() {
            for pipe in pipes.drain(..) {
                pipe.abort();
            }
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A redis-server of one test's own, on a free port, that the test can stop and start again
/// (its data is saved on stop and loaded on start) without touching the shared Redis.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(unique("redis-"));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.start_again().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await?)
    }

    /// Starts the stopped server on the same port, with the data it had.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("start redis-server (is it installed? make up)")?;
        self.child = Some(child);
        for _ in 0..100 {
            if let Ok(mut conn) = self.connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server on port {} did not start", self.port)
    }

    /// Saves and stops the server: clients get connection errors until it starts again.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let mut conn = self.connection().await?;
        // The server closes the connection as it exits, so the reply is an error.
        let _ = redis::cmd("SHUTDOWN")
            .arg("SAVE")
            .query_async::<()>(&mut conn)
            .await;
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
