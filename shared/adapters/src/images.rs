//! Image download and storage. Image URLs come from outside, so the fetcher refuses anything
//! that could reach inside the network (SSRF): loopback, private, link-local (the instance
//! metadata service lives there), shared and reserved ranges, both as IP literals and as what a
//! name resolves to. The check sits in the DNS resolver, so every connection (redirects
//! included) goes through it and a name cannot resolve to one address when checked and another
//! when connected. An explicit allowlist of hosts lifts the check (local image servers in tests).
//!
//! Stored images are content-addressed: the key is the SHA-256 of the bytes, so the same image
//! is one object however often and from whichever URL it arrives.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::{Bytes, BytesMut};
use domain::WorkerError;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use sha2::{Digest, Sha256};
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
    /// `IMAGE_MAX_BYTES`, `IMAGE_FETCH_TIMEOUT_MS`, `IMAGE_MAX_REDIRECTS` and
    /// `IMAGE_FETCH_ALLOW_HOSTS` (comma-separated), each defaulting as above.
    pub fn from_env() -> anyhow::Result<Self> {
        #[derive(serde::Deserialize)]
        struct Env {
            image_max_bytes: Option<usize>,
            image_fetch_timeout_ms: Option<u64>,
            image_max_redirects: Option<usize>,
            #[serde(default, deserialize_with = "crate::config::comma_list")]
            image_fetch_allow_hosts: Vec<String>,
        }
        let env: Env = crate::config::from_env()?;
        let defaults = Self::default();
        Ok(Self {
            max_bytes: env.image_max_bytes.unwrap_or(defaults.max_bytes),
            timeout: env
                .image_fetch_timeout_ms
                .map_or(defaults.timeout, Duration::from_millis),
            max_redirects: env.image_max_redirects.unwrap_or(defaults.max_redirects),
            allow_hosts: env.image_fetch_allow_hosts,
        })
    }
}

/// Why an image could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a supported image: {0}")]
    NotAnImage(String),
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
            Self::Refused(_) | Self::TooLarge(_) | Self::NotAnImage(_) => false,
        }
    }
}

/// A downloaded image whose bytes were checked to be what they claim.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Bytes,
    pub format: ImageFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    /// Recognises the format from the file's magic bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', ..] => Some(Self::Png),
            [0xff, 0xd8, 0xff, ..] => Some(Self::Jpeg),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

#[derive(Debug)]
struct Allowlist(Vec<String>);

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
fn check_target(url: &Url, allow: &Allowlist) -> Result<(), FetchError> {
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

/// Downloads images under a [`FetchPolicy`]. Built once per cold start.
#[derive(Debug, Clone)]
pub struct ImageFetcher {
    client: reqwest::Client,
    allow: Arc<Allowlist>,
    max_bytes: usize,
}

impl ImageFetcher {
    pub fn new(policy: &FetchPolicy) -> anyhow::Result<Self> {
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
            .user_agent(concat!(
                "adworkers-image-fetcher/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            client,
            allow,
            max_bytes: policy.max_bytes,
        })
    }

    #[tracing::instrument(skip(self), fields(url = %url))]
    pub async fn fetch(&self, url: &Url) -> Result<Image, FetchError> {
        check_target(url, &self.allow)?;
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let declared = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !declared.starts_with("image/") {
            return Err(FetchError::NotAnImage(format!("content type {declared:?}")));
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
        let format = ImageFormat::sniff(&body).ok_or_else(|| {
            FetchError::NotAnImage(format!(
                "bytes are not PNG, JPEG, GIF or WebP (declared {declared})"
            ))
        })?;
        Ok(Image {
            bytes: body.freeze(),
            format,
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

/// Content-addressed image storage in S3.
#[derive(Debug, Clone)]
pub struct ImageStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl ImageStore {
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
        }
    }

    pub fn key_for(image: &Image) -> String {
        let digest = hex::encode(Sha256::digest(&image.bytes));
        format!(
            "images/{}/{digest}.{}",
            &digest[..2],
            image.format.extension()
        )
    }

    /// Stores the image unless an object with its hash is already there; returns the key.
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket))]
    pub async fn put(&self, image: &Image) -> Result<String, WorkerError> {
        let key = Self::key_for(image);
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        match head {
            Ok(_) => return Ok(key),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {}
            Err(err) => {
                return Err(WorkerError::retryable(
                    anyhow::Error::new(err).context(format!("S3 HeadObject {key}")),
                ));
            }
        }
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(image.format.content_type())
            .cache_control("public, max-age=31536000, immutable")
            .body(ByteStream::from(image.bytes.clone()))
            .send()
            .await
            .map_err(|err| {
                WorkerError::retryable(
                    anyhow::Error::new(err).context(format!("S3 PutObject {key}")),
                )
            })?;
        Ok(key)
    }
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

    #[tokio::test]
    async fn names_resolving_inside_are_refused_unless_allowed() {
        let fetcher = ImageFetcher::new(&FetchPolicy::default()).expect("client");
        let url = Url::parse("http://localhost:9/a.png").expect("test URL");
        match fetcher.fetch(&url).await {
            Err(FetchError::Refused(reason)) => assert!(reason.contains("localhost"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn formats_are_sniffed_from_bytes() {
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(b"\xff\xd8\xff\xe0"),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(ImageFormat::sniff(b"GIF89a..."), Some(ImageFormat::Gif));
        assert_eq!(
            ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"<html>"), None);
    }

    #[test]
    fn keys_are_content_hashes() {
        let image = Image {
            bytes: Bytes::from_static(b"\x89PNG\r\n\x1a\n"),
            format: ImageFormat::Png,
        };
        let key = ImageStore::key_for(&image);
        assert!(key.starts_with("images/") && key.ends_with(".png"), "{key}");
        assert_eq!(key, ImageStore::key_for(&image.clone()));
        assert_eq!(key.len(), "images/xx/".len() + 64 + ".png".len());
    }

    #[test]
    fn only_server_side_and_network_faults_are_retryable() {
        assert!(FetchError::Status(503).is_retryable());
        assert!(FetchError::Status(429).is_retryable());
        assert!(!FetchError::Status(404).is_retryable());
        assert!(!FetchError::TooLarge(1).is_retryable());
        assert!(FetchError::Transient("reset".into()).is_retryable());
    }
}
