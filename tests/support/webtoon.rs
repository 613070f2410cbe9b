//! webtoon-sync's world: an image server with canned responses (wiremock), sample events and
//! deps.

use std::collections::HashMap;

use anyhow::Context as _;
use aws_lambda_events::event::sqs::SqsEvent;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{TestAws, TestDb, repo_root};

/// Canned responses for [`ImageServer`] routes.
pub mod canned {
    use wiremock::ResponseTemplate;

    pub fn png(body: Vec<u8>) -> ResponseTemplate {
        ok("image/png", body)
    }

    pub fn ok(content_type: &str, body: Vec<u8>) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(body, content_type)
    }

    pub fn status(status: u16) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_raw(b"no".to_vec(), "text/plain")
    }

    pub fn redirect(location: &str) -> ResponseTemplate {
        ResponseTemplate::new(302).insert_header("Location", location)
    }
}

/// An HTTP server on 127.0.0.1 (wiremock) with a fixed response per path; unknown paths 404.
pub struct ImageServer {
    pub base: String,
    server: MockServer,
}

impl ImageServer {
    pub async fn start(routes: HashMap<String, ResponseTemplate>) -> anyhow::Result<Self> {
        let server = MockServer::start().await;
        for (route, response) in routes {
            Mock::given(method("GET"))
                .and(path(route))
                .respond_with(response)
                .mount(&server)
                .await;
        }
        Ok(Self {
            base: server.uri(),
            server,
        })
    }

    /// How many requests asked for `route`.
    pub async fn hits(&self, route: &str) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|request| request.url.path() == route)
            .count()
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
        routes.insert(format!("/{name}"), canned::png(sample_png(name)?));
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
