//! Who may do what: [`Reader`] for every read, [`Admin`] for every change. Both need the
//! authorizer's verified claims (401 without) and a role among the token's scopes (403 without).

use adapters::http::{Caller, Problem};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::admin::Role;

/// A caller who may read (`ops:read` or `ops:admin`).
pub struct Reader(pub Caller);

/// A caller who may also change things (`ops:admin`).
pub struct Admin(pub Caller);

/// The caller, if it has the role `needed`: 401 without verified claims, 403 without the role.
pub(crate) async fn caller_with<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    needed: Role,
) -> Result<Caller, Problem> {
    let caller = Caller::from_request_parts(parts, state).await?;
    match Role::from_scopes(&caller.scopes) {
        Some(role) if role >= needed => Ok(caller),
        _ => {
            tracing::warn!(caller = %caller.subject, request_id = %caller.request_id, needed = ?needed, "refused: role");
            Err(Problem::forbidden())
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Reader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        caller_with(parts, state, Role::Reader).await.map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        caller_with(parts, state, Role::Admin).await.map(Self)
    }
}
