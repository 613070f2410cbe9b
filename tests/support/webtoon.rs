//! webtoon-sync's world: an image server with canned responses, sample events and deps.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use aws_lambda_events::event::sqs::SqsEvent;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::{TestAws, TestDb, repo_root};

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
