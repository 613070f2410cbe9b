//! The alerts' world: tokens from the local issuer (`.stack/jwt`, written by `make up`), push
//! endpoints in the local AWS endpoint, and a stand-in for the WebSocket API's management
//! endpoint (`POST /@connections/{id}`) that can say a connection is gone (410) or fail (500).

use anyhow::Context as _;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::repo_root;

pub use devtools::token::{LOCAL_AUDIENCE, LOCAL_ISSUER};

fn jwt_file(name: &str) -> anyhow::Result<String> {
    let path = repo_root().join(".stack/jwt").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("read {} (run make up)", path.display()))
}

/// The local issuer's JWKS.
pub fn local_jwks() -> anyhow::Result<String> {
    jwt_file("jwks.json")
}

/// The local issuer's keys as alert-connections holds them (`file://` JWKS).
pub async fn local_issuer_keys() -> anyhow::Result<adapters::jwt::IssuerKeys> {
    let url = format!(
        "file://{}",
        repo_root().join(".stack/jwt/jwks.json").display()
    );
    adapters::jwt::IssuerKeys::fetch(&url, LOCAL_ISSUER, LOCAL_AUDIENCE).await
}

/// A token for `subject`, signed by the local issuer, for `audience`, expiring in
/// `expires_in_secs` (negative: expired already).
pub fn token(subject: &str, audience: &str, expires_in_secs: i64) -> anyhow::Result<String> {
    scoped_token(subject, audience, "alerts:write", expires_in_secs)
}

/// A token as [`token`], with `scope`.
pub fn scoped_token(
    subject: &str,
    audience: &str,
    scope: &str,
    expires_in_secs: i64,
) -> anyhow::Result<String> {
    devtools::token::local_token(
        &repo_root().join(".stack/jwt"),
        subject,
        audience,
        scope,
        expires_in_secs,
    )
}

/// A stand-in for the WebSocket API's management endpoint. Connections named gone answer 410,
/// failing ones 500, the rest 200; every post is recorded.
pub struct ConnectionsApi {
    pub server: MockServer,
}

impl ConnectionsApi {
    pub async fn start(gone: &[&str], failing: &[&str]) -> Self {
        let server = MockServer::start().await;
        for (ids, status) in [(gone, 410), (failing, 500)] {
            for id in ids {
                Mock::given(method("POST"))
                    .and(path_regex(format!("^/@connections/{id}$")))
                    .respond_with(
                        ResponseTemplate::new(status).set_body_string(r#"{"message":"no"}"#),
                    )
                    .with_priority(1)
                    .mount(&server)
                    .await;
            }
        }
        Mock::given(method("POST"))
            .and(path_regex("^/@connections/[^/]+$"))
            .respond_with(ResponseTemplate::new(200))
            .with_priority(5)
            .mount(&server)
            .await;
        Self { server }
    }

    /// The outage is over: every connection answers 200 (what was recorded is forgotten).
    pub async fn heal(&self) {
        self.answer_all(200).await;
    }

    /// An outage: every connection answers 500.
    pub async fn fail_all(&self) {
        self.answer_all(500).await;
    }

    async fn answer_all(&self, status: u16) {
        self.server.reset().await;
        Mock::given(method("POST"))
            .and(path_regex("^/@connections/[^/]+$"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&self.server)
            .await;
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The frames posted to `connection` and answered 200.
    pub async fn received(&self, connection: &str) -> Vec<String> {
        let target = format!("/@connections/{connection}");
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == target)
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

/// A push endpoint in the local SNS for `token` (an FCM application per call).
pub async fn push_endpoint(sns: &aws_sdk_sns::Client, token: &str) -> anyhow::Result<String> {
    let app = sns
        .create_platform_application()
        .name(crate::unique("t-fcm-"))
        .platform("GCM")
        .attributes("PlatformCredential", "local")
        .send()
        .await?
        .platform_application_arn
        .context("platform application ARN")?;
    sns.create_platform_endpoint()
        .platform_application_arn(app)
        .token(token)
        .send()
        .await?
        .endpoint_arn
        .context("endpoint ARN")
}

/// Disables a push endpoint, as SNS does when the platform reports the device gone.
pub async fn disable_endpoint(sns: &aws_sdk_sns::Client, arn: &str) -> anyhow::Result<()> {
    sns.set_endpoint_attributes()
        .endpoint_arn(arn)
        .attributes("Enabled", "false")
        .send()
        .await?;
    Ok(())
}
