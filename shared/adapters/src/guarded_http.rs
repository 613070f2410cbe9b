//! An HTTP client for URLs that come from outside (image URLs in webtoon requests, platform
//! catalog feeds). It refuses anything that could reach inside the network (SSRF): loopback,
//! private, link-local (the instance metadata service lives there), shared and reserved ranges,
//! both as IP literals and as what a name resolves to. The check sits in the DNS resolver, so
//! every connection (redirects included) goes through it and a name cannot resolve to one
//! address when checked and another when connected. An explicit allowlist of hosts lifts the
//! check (local servers in tests). Bodies are capped while they arrive, and every request has a
//! timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::{Host, Url};

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub max_bytes: usize,
    pub timeout: Duration,
    pub max_redirects: usize,
    /// Hosts (names or IPs, exact, case-insensitive) exempt from the address check.
    pub allow_hosts: Vec<String>,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            max_bytes: 5 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            max_redirects: 3,
            allow_hosts: Vec::new(),
        }
    }
}

impl FetchPolicy {
    /// `{PREFIX}_MAX_BYTES`, `{PREFIX}_FETCH_TIMEOUT_MS`, `{PREFIX}_MAX_REDIRECTS` and
    /// `{PREFIX}_FETCH_ALLOW_HOSTS` (comma-separated), each defaulting to `defaults`' value:
    /// one set of variables per kind of fetch (`IMAGE`, `CATALOG`).
    pub fn from_env(prefix: &str, defaults: Self) -> anyhow::Result<Self> {
        #[derive(serde::Deserialize)]
        struct Env {
            max_bytes: Option<usize>,
            fetch_timeout_ms: Option<u64>,
            max_redirects: Option<usize>,
            #[serde(default, deserialize_with = "crate::config::comma_list")]
            fetch_allow_hosts: Vec<String>,
        }
        let env: Env = crate::config::from_env_prefixed(&format!("{prefix}_"))?;
        Ok(Self {
            max_bytes: env.max_bytes.unwrap_or(defaults.max_bytes),
            timeout: env
                .fetch_timeout_ms
                .map_or(defaults.timeout, Duration::from_millis),
            max_redirects: env.max_redirects.unwrap_or(defaults.max_redirects),
            allow_hosts: env.fetch_allow_hosts,
        })
    }
}

/// Why a URL could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a supported image: {0}")]
    NotAnImage(String),
    /// The response is not what was asked for (its content type).
    #[error("unexpected content: {0}")]
    Unexpected(String),
    #[error("HTTP status {0}")]
    Status(u16),
    /// A network fault, with its cause kept: as the error's source, and spelled out in its
    /// message.
    #[error("transient: {}", with_causes(.0.as_ref()))]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl FetchError {
    /// Server errors, throttling and network faults may pass later; the rest is the URL's fault.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transient(_) => true,
            Self::Status(code) => *code >= 500 || *code == 408 || *code == 429,
            Self::Refused(_) | Self::TooLarge(_) | Self::NotAnImage(_) | Self::Unexpected(_) => {
                false
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Allowlist(Vec<String>);

impl Allowlist {
    fn permits(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }
}

/// Resolves names and drops every address that is not publicly routable.
struct GuardedResolver {
    allow: Arc<Allowlist>,
}

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to non-public addresses")]
struct AddressRefused {
    host: String,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = if allow.permits(&host) {
                resolved
            } else {
                resolved.into_iter().filter(|a| is_public(a.ip())).collect()
            };
            if permitted.is_empty() {
                return Err(Box::new(AddressRefused { host }) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// True for addresses on the public internet. Everything else is refused: loopback, RFC 1918,
/// link-local (169.254.169.254, the metadata service), CGNAT, unspecified, broadcast,
/// documentation, benchmarking, reserved, multicast, IPv6 ULA and link-local, and IPv4 addresses
/// smuggled inside IPv6 (mapped, NAT64).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg = v6.segments();
            if seg[0] == 0x64 && seg[1] == 0xff9b {
                let [a, b] = seg[6].to_be_bytes();
                let [c, d] = seg[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                || v6 == Ipv6Addr::new(0x0100, 0, 0, 0, 0, 0, 0, 0))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

/// Checks a URL before any connection: scheme, and IP literals (which skip the resolver).
pub(crate) fn check_target(url: &Url, allow: &Allowlist) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Refused(format!("scheme {}", url.scheme())));
    }
    let literal = match url.host() {
        None => return Err(FetchError::Refused("URL without a host".to_owned())),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if is_public(literal) || allow.permits(&literal.to_string()) {
        Ok(())
    } else {
        Err(FetchError::Refused(format!(
            "address {literal} is not public"
        )))
    }
}

/// A response body that arrived whole and within the size cap.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    /// The declared content type, lower-cased ("" when there was none).
    pub content_type: String,
}

/// GETs outside URLs under a [`FetchPolicy`]. Built once per cold start.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    allow: Arc<Allowlist>,
    max_bytes: usize,
}

impl GuardedClient {
    /// `agent` names the caller in the User-Agent header, so a platform can tell who polls it.
    pub fn new(policy: &FetchPolicy, agent: &str) -> anyhow::Result<Self> {
        let allow = Arc::new(Allowlist(policy.allow_hosts.clone()));
        let redirect_allow = Arc::clone(&allow);
        let max_redirects = policy.max_redirects;
        let redirects = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                attempt.error(FetchError::Refused(format!(
                    "more than {max_redirects} redirects"
                )))
            } else if let Err(refused) = check_target(attempt.url(), &redirect_allow) {
                attempt.error(refused)
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .redirect(redirects)
            .dns_resolver(Arc::new(GuardedResolver {
                allow: Arc::clone(&allow),
            }))
            .no_proxy()
            .user_agent(format!("adworkers-{agent}/{}", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow,
            max_bytes: policy.max_bytes,
        })
    }

    /// GETs `url`, asking for `accept`. A body whose declared content type does not start with
    /// `expect_type` is refused before it is read; one larger than the cap, while it arrives.
    #[tracing::instrument(skip(self), fields(url = %url))]
    pub async fn get(
        &self,
        url: &Url,
        accept: &str,
        expect_type: &str,
    ) -> Result<Fetched, FetchError> {
        check_target(url, &self.allow)?;
        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !content_type.starts_with(expect_type) {
            return Err(FetchError::Unexpected(format!(
                "content type {content_type:?}, not {expect_type}"
            )));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        // The declared length can lie (or be absent): count what actually arrives.
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes: body.freeze(),
            content_type,
        })
    }
}

/// An error and its causes, `: `-separated.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Finds our own refusals inside reqwest's error chain; everything else is a network fault.
fn request_error(err: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<AddressRefused>() {
            return FetchError::Refused(refused.to_string());
        }
        if let Some(FetchError::Refused(reason)) = cause.downcast_ref::<FetchError>() {
            return FetchError::Refused(reason.clone());
        }
        source = cause.source();
    }
    FetchError::Transient(Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn only_public_addresses_pass() {
        for public in [
            "8.8.8.8",
            "203.0.114.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(public)), "{public} should be public");
        }
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip(internal)), "{internal} should be refused");
        }
    }

    #[test]
    fn literal_targets_are_checked_before_connecting() {
        let none = Allowlist(vec![]);
        let url = |s: &str| Url::parse(s).expect("test URL");
        assert!(check_target(&url("http://169.254.169.254/latest/meta-data/"), &none).is_err());
        assert!(check_target(&url("http://[::1]:8080/a.png"), &none).is_err());
        assert!(check_target(&url("file:///etc/passwd"), &none).is_err());
        assert!(check_target(&url("https://images.example.com/a.png"), &none).is_ok());
        let local = Allowlist(vec!["127.0.0.1".to_owned()]);
        assert!(check_target(&url("http://127.0.0.1:8089/a.png"), &local).is_ok());
    }

    #[test]
    fn only_server_side_and_network_faults_are_retryable() {
        assert!(FetchError::Status(503).is_retryable());
        assert!(FetchError::Status(429).is_retryable());
        assert!(!FetchError::Status(404).is_retryable());
        assert!(!FetchError::TooLarge(1).is_retryable());
        assert!(FetchError::Transient("reset".into()).is_retryable());
    }

    #[tokio::test]
    async fn names_resolving_inside_are_refused_unless_allowed() {
        let client = GuardedClient::new(&FetchPolicy::default(), "test").expect("client");
        let url = Url::parse("http://localhost:9/feed.json").expect("test URL");
        match client
            .get(&url, "application/json", "application/json")
            .await
        {
            Err(FetchError::Refused(reason)) => assert!(reason.contains("localhost"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
