//! Verifies the platform's access tokens the way API Gateway's JWT authorizer does: RS256
//! signed by a key of the issuer's JWKS (chosen by `kid`), issuer and audience as configured,
//! not expired, with a subject. The WebSocket API's authorizer (alert-connections) uses it, since
//! WebSocket APIs have no JWT authorizer of their own, and so does the local HTTP gateway that
//! stands in for API Gateway (`local-triggers http`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub scope: Option<String>,
    /// Every other claim, as strings where they are strings (API Gateway passes them so).
    #[serde(flatten)]
    pub other: HashMap<String, serde_json::Value>,
}

/// Why a token was refused. Logged, never answered: the client hears 401 only.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no token")]
    Missing,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token not valid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// The issuer's keys and what a token must say.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl Verifier {
    /// From a JWKS document (JSON) and the expected issuer and audience.
    pub fn new(jwks: &str, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(jwks)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            keys.insert(kid, DecodingKey::from_jwk(jwk)?);
        }
        anyhow::ensure!(!keys.is_empty(), "the JWKS has no key with a kid");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(Self { keys, validation })
    }

    /// Fetches the issuer's JWKS from `url` (once per cold start); a `file://` URL is read from
    /// disk (the local stack's issuer).
    pub async fn fetch(url: &str, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        if let Some(path) = url.strip_prefix("file://") {
            return Self::new(&std::fs::read_to_string(path)?, issuer, audience);
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        let jwks = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Self::new(&jwks, issuer, audience)
    }

    /// The token's claims if it is valid.
    pub fn verify(&self, token: &str) -> Result<Claims, Refused> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Refused::Missing);
        }
        let header = decode_header(token)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(Refused::UnknownKey)?;
        let claims = decode::<Claims>(token, key, &self.validation)?.claims;
        if claims.sub.is_empty() {
            return Err(Refused::Missing);
        }
        Ok(claims)
    }
}

/// How often at most the issuer's keys are fetched again for a token naming an unknown key.
pub const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// The issuer's keys as a long-lived function holds them: fetched at cold start, and again when
/// a token names a key they do not have (the issuer rotated its keys), at most once per
/// [`REFETCH_AFTER`], so a flood of forged `kid`s cannot make the function hammer the issuer.
pub struct IssuerKeys {
    url: String,
    issuer: String,
    audience: String,
    refetch_after: Duration,
    current: RwLock<Arc<Verifier>>,
    fetched: Mutex<Instant>,
}

impl IssuerKeys {
    /// Fetches the keys from `url` (`https://…` or `file://…`).
    pub async fn fetch(url: &str, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        Self::fetch_every(url, issuer, audience, REFETCH_AFTER).await
    }

    /// As [`Self::fetch`], fetching again at most once per `refetch_after`.
    pub async fn fetch_every(
        url: &str,
        issuer: &str,
        audience: &str,
        refetch_after: Duration,
    ) -> anyhow::Result<Self> {
        let verifier = Verifier::fetch(url, issuer, audience).await?;
        Ok(Self {
            url: url.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            refetch_after,
            current: RwLock::new(Arc::new(verifier)),
            fetched: Mutex::new(Instant::now()),
        })
    }

    fn current(&self) -> Arc<Verifier> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether a new fetch is allowed now; if so, it is counted as made.
    fn due(&self) -> bool {
        let mut fetched = self
            .fetched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if fetched.elapsed() < self.refetch_after {
            return false;
        }
        *fetched = Instant::now();
        true
    }

    /// The token's claims if it is valid, by the keys held or, for an unknown key, by the keys
    /// fetched again.
    pub async fn verify(&self, token: &str) -> Result<Claims, Refused> {
        match self.current().verify(token) {
            Err(Refused::UnknownKey) if self.due() => {
                match Verifier::fetch(&self.url, &self.issuer, &self.audience).await {
                    Ok(fresh) => {
                        tracing::info!("the issuer's keys fetched again (a token named a new key)");
                        *self
                            .current
                            .write()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(fresh);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "the issuer's keys could not be fetched again")
                    }
                }
                self.current().verify(token)
            }
            other => other,
        }
    }
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused() {
        assert!(Verifier::new(r#"{"keys":[]}"#, "i", "a").is_err());
        assert!(Verifier::new("not json", "i", "a").is_err());
    }
}
