//! IAM authentication to Amazon MSK for the functions' own Kafka clients (the dead-letter
//! producer). MSK's IAM listener (port 9098) takes SASL/OAUTHBEARER over TLS, where the token
//! is a SigV4-presigned `kafka-cluster:Connect` request: the URL
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-…&User-Agent=…`,
//! base64url-encoded without padding and valid for 15 minutes. librdkafka asks for a new token
//! before the current one expires (at 80 % of its lifetime).
//!
//! The token is built and signed by the `aws-msk-iam-sasl-signer` crate (on top of
//! `aws-sigv4`), a maintained community port of AWS's `aws-msk-iam-sasl-signer-go`: the token
//! format is MSK's, not ours, so we use an implementation that follows AWS's reference signer
//! instead of keeping our own copy of the presigning rules. This module only supplies the
//! function's credentials and region and hands the token to librdkafka.
//!
//! The event source mappings that feed the functions authenticate themselves with the
//! function's role; this is only for what the functions produce.

use std::error::Error;

use anyhow::Context as _;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider;
use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::ConsumerContext;
use rdkafka::producer::ProducerContext;

/// A token for `region`, signed now with credentials from `credentials`; returns the token and
/// its expiry in milliseconds since the epoch.
pub async fn token(
    credentials: &SharedCredentialsProvider,
    region: &Region,
) -> anyhow::Result<(String, i64)> {
    generate_auth_token_from_credentials_provider(region.clone(), credentials.clone())
        .await
        .with_context(|| format!("signing an MSK IAM token for {region}"))
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
    region: Region,
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
            .clone();
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
        // librdkafka calls this from its own threads; fetching the credentials and signing are
        // async, so they run on the function's runtime from a scoped thread (safe from any
        // caller, including a thread of that runtime).
        let (token, lifetime_ms) = std::thread::scope(|scope| {
            scope
                .spawn(|| iam.runtime.block_on(token(&iam.credentials, &iam.region)))
                .join()
        })
        .map_err(|_| "MSK IAM token thread panicked")??;
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
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::{ProvideCredentials, future};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const LIFETIME: Duration = Duration::from_secs(15 * 60);

    fn static_credentials() -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session/+=".into()),
            None,
            "test",
        ))
    }

    fn sdk(credentials: SharedCredentialsProvider) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("ap-northeast-2"))
            .credentials_provider(credentials)
            .build()
    }

    fn epoch_ms(time: SystemTime) -> anyhow::Result<i64> {
        Ok(i64::try_from(time.duration_since(UNIX_EPOCH)?.as_millis())?)
    }

    /// The URL in a token and its query parameters.
    fn decode(token: &str) -> anyhow::Result<(url::Url, HashMap<String, String>)> {
        let url = url::Url::parse(std::str::from_utf8(&URL_SAFE_NO_PAD.decode(token)?)?)?;
        let query = url.query_pairs().into_owned().collect();
        Ok((url, query))
    }

    /// Checks that `token` connects to MSK in ap-northeast-2 with the test credentials and
    /// expires `LIFETIME` after it was signed, between `before` and `after`.
    fn assert_connect_token(
        token: &str,
        expires_ms: i64,
        before: SystemTime,
        after: SystemTime,
    ) -> anyhow::Result<()> {
        let (url, query) = decode(token)?;
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.host_str(), Some("kafka.ap-northeast-2.amazonaws.com"));
        assert_eq!(query["Action"], "kafka-cluster:Connect");
        assert!(
            query["X-Amz-Credential"].starts_with("AKIDEXAMPLE/")
                && query["X-Amz-Credential"]
                    .ends_with("/ap-northeast-2/kafka-cluster/aws4_request"),
            "signed for our key and region: {}",
            query["X-Amz-Credential"]
        );
        assert_eq!(query["X-Amz-Security-Token"], "session/+=");
        // The signing time has whole seconds.
        let earliest = epoch_ms(before + LIFETIME)? / 1000 * 1000;
        let latest = epoch_ms(after + LIFETIME)?;
        assert!(
            (earliest..=latest).contains(&expires_ms),
            "expiry {expires_ms} not in {earliest}..={latest}"
        );
        Ok(())
    }

    #[derive(Debug)]
    struct NoCredentials;

    impl ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("none in tests")))
        }
    }

    #[tokio::test]
    async fn the_token_connects_to_the_regions_msk_with_our_credentials() -> anyhow::Result<()> {
        let before = SystemTime::now();
        let (token, expires_ms) =
            token(&static_credentials(), &Region::new("ap-northeast-2")).await?;
        assert_connect_token(&token, expires_ms, before, SystemTime::now())
    }

    #[tokio::test]
    async fn missing_credentials_are_an_error_for_librdkafka() -> anyhow::Result<()> {
        let err = token(
            &SharedCredentialsProvider::new(NoCredentials),
            &Region::new("eu-west-1"),
        )
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("signed without credentials"))?;
        assert!(format!("{err:#}").contains("signing an MSK IAM token for eu-west-1"));
        let context = KafkaContext::msk_iam(&sdk(SharedCredentialsProvider::new(NoCredentials)))?;
        assert!(context.generate_oauth_token(None).is_err());
        assert!(KafkaContext::default().generate_oauth_token(None).is_err());
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn librdkafka_threads_get_tokens_from_the_runtime() -> anyhow::Result<()> {
        let context = KafkaContext::msk_iam(&sdk(static_credentials()))?;
        let before = SystemTime::now();
        // As librdkafka does: from a thread outside the runtime.
        let token = std::thread::spawn(move || {
            context
                .generate_oauth_token(None)
                .map_err(|err| err.to_string())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("librdkafka thread panicked"))?
        .map_err(anyhow::Error::msg)?;
        assert_connect_token(&token.token, token.lifetime_ms, before, SystemTime::now())?;
        assert!(token.principal_name.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_producer_for_the_iam_listener_is_accepted_by_librdkafka() -> anyhow::Result<()> {
        use crate::config::{DeadLetterConfig, KafkaAuth, KafkaConfig};
        let sdk = sdk(static_credentials());
        let config = DeadLetterConfig {
            kafka: KafkaConfig {
                brokers: "b-1.example.kafka.ap-northeast-2.amazonaws.com:9098".to_owned(),
                auth: KafkaAuth::MskIam,
            },
            bucket: "dead-letters".to_owned(),
        };
        let db = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1/unused")?;
        crate::kafka::DeadLetters::connect(&config, &sdk, db, "test")?;
        // From a thread of the (current-thread) runtime itself.
        let before = SystemTime::now();
        let token = KafkaContext::msk_iam(&sdk)?
            .generate_oauth_token(None)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        assert_connect_token(&token.token, token.lifetime_ms, before, SystemTime::now())
    }
}
