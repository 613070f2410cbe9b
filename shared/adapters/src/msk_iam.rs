//! IAM authentication to Amazon MSK for the functions' own Kafka clients (the dead-letter
//! producer). MSK's IAM listener (port 9098) takes SASL/OAUTHBEARER over TLS, where the token
//! is a SigV4-presigned `kafka-cluster:Connect` request: the URL
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-…&User-Agent=…`,
//! base64url-encoded without padding. librdkafka asks for a new token before the current one
//! expires (at 80 % of its lifetime).
//!
//! The event source mappings that feed the functions authenticate themselves with the
//! function's role; this is only for what the functions produce.

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::ConsumerContext;
use rdkafka::producer::ProducerContext;

/// How long a token is valid; the signed URL's `X-Amz-Expires`.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
const USER_AGENT: &str = concat!("adworkers/", env!("CARGO_PKG_VERSION"));

/// A token for `region`, signed with `credentials` at `now`; returns the token and its expiry
/// in milliseconds since the epoch.
pub fn token(
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
) -> anyhow::Result<(String, i64)> {
    let host = format!("kafka.{region}.amazonaws.com");
    let unsigned = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(now)
        .settings(settings)
        .build()?
        .into();
    let request = SignableRequest::new(
        "GET",
        &unsigned,
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(&[]),
    )?;
    let (instructions, _signature) = sign(request, &params)?.into_parts();
    let (_headers, query) = instructions.into_parts();
    let mut signed = url::Url::parse(&unsigned)?;
    {
        let mut pairs = signed.query_pairs_mut();
        for (name, value) in &query {
            pairs.append_pair(name, value);
        }
        pairs.append_pair("User-Agent", USER_AGENT);
    }
    let expires = now + TOKEN_LIFETIME;
    let expires_ms = i64::try_from(expires.duration_since(UNIX_EPOCH)?.as_millis())?;
    Ok((URL_SAFE_NO_PAD.encode(signed.as_str()), expires_ms))
}

/// The client context of a producer or consumer: with MSK IAM it supplies OAUTHBEARER tokens
/// from the function's credentials; without, librdkafka never asks.
#[derive(Clone, Default)]
pub struct KafkaContext {
    iam: Option<Iam>,
}

#[derive(Clone)]
struct Iam {
    credentials: SharedCredentialsProvider,
    region: String,
    runtime: tokio::runtime::Handle,
}

impl KafkaContext {
    /// Tokens from the SDK configuration's credentials and region. Must be called inside the
    /// Tokio runtime, which fetches (and refreshes) the credentials.
    pub fn msk_iam(sdk: &SdkConfig) -> anyhow::Result<Self> {
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| anyhow::anyhow!("MSK IAM auth needs AWS credentials"))?;
        let region = sdk
            .region()
            .ok_or_else(|| anyhow::anyhow!("MSK IAM auth needs an AWS region"))?
            .to_string();
        Ok(Self {
            iam: Some(Iam {
                credentials,
                region,
                runtime: tokio::runtime::Handle::try_current()?,
            }),
        })
    }
}

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        let iam = self
            .iam
            .as_ref()
            .ok_or("OAUTHBEARER is only used with MSK IAM authentication")?;
        // librdkafka calls this from its own threads; the credentials provider is async, so it
        // runs on the function's runtime from a scoped thread (safe from any caller).
        let credentials = std::thread::scope(|scope| {
            scope
                .spawn(|| iam.runtime.block_on(iam.credentials.provide_credentials()))
                .join()
        })
        .map_err(|_| "credentials thread panicked")??;
        let (token, lifetime_ms) = token(&credentials, &iam.region, SystemTime::now())?;
        Ok(OAuthToken {
            token,
            principal_name: String::new(),
            lifetime_ms,
        })
    }
}

impl ConsumerContext for KafkaContext {}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = ();

    fn delivery(
        &self,
        _result: &rdkafka::message::DeliveryResult<'_>,
        _opaque: Self::DeliveryOpaque,
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_a_presigned_connect_url() -> anyhow::Result<()> {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session/+=".into()),
            None,
            "test",
        );
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let (token, expires_ms) = token(&credentials, "ap-northeast-2", now)?;
        assert_eq!(expires_ms, (1_795_000_000 + 900) * 1000);
        let url = url::Url::parse(std::str::from_utf8(&URL_SAFE_NO_PAD.decode(&token)?)?)?;
        assert_eq!(url.host_str(), Some("kafka.ap-northeast-2.amazonaws.com"));
        let query: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(query["Action"], "kafka-cluster:Connect");
        assert_eq!(query["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(query["X-Amz-Expires"], "900");
        assert_eq!(
            query["X-Amz-Credential"],
            "AKIDEXAMPLE/20261118/ap-northeast-2/kafka-cluster/aws4_request"
        );
        assert_eq!(query["X-Amz-Security-Token"], "session/+=");
        assert_eq!(query["X-Amz-SignedHeaders"], "host");
        assert_eq!(query["X-Amz-Signature"].len(), 64);
        assert!(query["User-Agent"].starts_with("adworkers/"));
        assert!(!token.contains('='), "no padding");
        Ok(())
    }

    #[tokio::test]
    async fn a_producer_for_the_iam_listener_is_accepted_by_librdkafka() -> anyhow::Result<()> {
        use crate::config::{KafkaAuth, KafkaConfig};
        let sdk = SdkConfig::builder()
            .region(aws_config::Region::new("ap-northeast-2"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            )))
            .build();
        let config = KafkaConfig {
            brokers: "b-1.example.kafka.ap-northeast-2.amazonaws.com:9098".to_owned(),
            auth: KafkaAuth::MskIam,
        };
        let db = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1/unused")?;
        crate::kafka::DeadLetters::connect(&config, &sdk, db, "test")?;
        let token = KafkaContext::msk_iam(&sdk)?.generate_oauth_token(None);
        assert!(token.is_ok_and(|t| !t.token.is_empty()));
        Ok(())
    }
}
