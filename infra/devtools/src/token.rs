//! Tokens of the local issuer (`.stack/jwt`, written by `make up`), for the demo and the tests:
//! what the console's identity provider hands out in production, signed RS256 with the key
//! whose JWKS the local authorizers read.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

/// The local issuer and the audience the console's tokens are for (the template's `JwtIssuer`
/// and `JwtAudience` on the local stack).
pub const LOCAL_ISSUER: &str = "https://auth.adworkers.local/";
pub const LOCAL_AUDIENCE: &str = "adworkers-ops";

/// A token for `subject` and `audience` with `scope` (space-separated: `alerts:write`,
/// `ops:read`, `ops:admin`), expiring in `expires_in_secs` (negative: already expired), signed
/// with the key in `jwt_dir`.
pub fn local_token(
    jwt_dir: &Path,
    subject: &str,
    audience: &str,
    scope: &str,
    expires_in_secs: i64,
) -> anyhow::Result<String> {
    let now = unix_now()?;
    let claims = serde_json::json!({
        "iss": LOCAL_ISSUER, "aud": audience, "sub": subject,
        "iat": now, "exp": now + expires_in_secs, "scope": scope,
    });
    signed_token(jwt_dir, &claims)
}

/// Seconds since the epoch, as a token's time claims read.
pub fn unix_now() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    )?)
}

/// `claims` as they are, signed RS256 with the key in `jwt_dir` (the tests forge tokens that
/// are signed right but claim the wrong thing).
pub fn signed_token(jwt_dir: &Path, claims: &serde_json::Value) -> anyhow::Result<String> {
    let read = |name: &str| {
        std::fs::read_to_string(jwt_dir.join(name))
            .with_context(|| format!("read {} (run make up)", jwt_dir.join(name).display()))
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(read("kid")?.trim().to_owned());
    let key = EncodingKey::from_rsa_pem(read("private.pem")?.as_bytes())?;
    Ok(encode(&header, claims, &key)?)
}
