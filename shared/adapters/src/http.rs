//! The HTTP functions' base (API Gateway HTTP API behind a JWT authorizer): an axum router
//! served by `lambda_http`, the caller taken from the authorizer's claims, JSON bodies read
//! within a size limit, and every error answered as problem JSON (RFC 9457) without internal
//! detail.
//!
//! The authorizer checks the token's signature, issuer, audience and expiry before the function
//! runs; [`Caller`] refuses a request that reached the function without its claims anyway, so a
//! route deployed without the authorizer by mistake is closed, not open.

use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use domain::WorkerError;
use lambda_http::request::RequestContext;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest body a JSON endpoint reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An error as the client reads it: `application/problem+json` with a status, a title and, for
/// the client's own mistakes, what was wrong. Server faults say nothing more than their title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: Option<String>) -> Self {
        Self {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", None)
    }

    /// The request cannot be read (a required header missing or malformed): `detail` says what.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            Some(domain::text::storable(&detail.into())),
        )
    }

    /// The caller is known, but its role does not allow this.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", None)
    }

    /// The request conflicts with the state of the resource: `detail` says how.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            Some(domain::text::storable(&detail.into())),
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found", None)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", None)
    }

    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            Some(format!("the body may be at most {MAX_BODY_BYTES} bytes")),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            Some("the body must be application/json".to_owned()),
        )
    }

    /// The request's content is wrong: `detail` says what, in the words of our own checks.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Content",
            Some(domain::text::storable(&detail.into())),
        )
    }

    /// A dependency failed: the client may retry; what failed is logged, not answered.
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", None)
    }
}

impl From<WorkerError> for Problem {
    fn from(err: WorkerError) -> Self {
        match err {
            // The database's own words may name tables, constraints and values: logged only.
            WorkerError::Rejected(rejection)
                if rejection.flaw() == domain::error::Flaw::RefusedByStore =>
            {
                tracing::warn!(error.kind = "refused_by_store", error = %rejection, "request refused by the database");
                Self::invalid("the request could not be stored")
            }
            WorkerError::Rejected(rejection) => Self::invalid(rejection.reason()),
            WorkerError::Retryable(err) => {
                tracing::error!(error.kind = "retryable", error = %format!("{err:#}"), "request failed");
                Self::unavailable()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// Who is calling: the subject of the token the authorizer verified, with its scopes, and the
/// request's id (API Gateway's) for the audit trail and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub scopes: Vec<String>,
    pub request_id: String,
}

impl Caller {
    /// The caller from API Gateway's request context; `None` without verified JWT claims.
    pub fn from_context(context: &RequestContext) -> Option<Self> {
        let RequestContext::ApiGatewayV2(context) = context else {
            return None;
        };
        let jwt = context.authorizer.as_ref()?.jwt.as_ref()?;
        let subject = jwt.claims.get("sub").filter(|sub| !sub.is_empty())?.clone();
        // HTTP APIs pass `scope` as a space-separated claim; `scopes` when routes require them.
        let scopes = match &jwt.scopes {
            Some(scopes) => scopes.clone(),
            None => jwt
                .claims
                .get("scope")
                .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        Some(Self {
            subject,
            scopes,
            request_id: context.request_id.clone().unwrap_or_default(),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = parts
            .extensions
            .get::<RequestContext>()
            .and_then(Self::from_context);
        match caller {
            Some(caller) => Ok(caller),
            None => {
                tracing::warn!("request without verified claims refused");
                Err(Problem::unauthorized())
            }
        }
    }
}

/// Whether the request says its body is `application/json` (parameters such as `charset`
/// allowed).
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a JSON body: `application/json`, at most [`MAX_BODY_BYTES`], decoded into `T` (whose
/// serde attributes decide whether unknown fields are refused).
pub fn json_body<T: DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, Problem> {
    if !is_json(headers) {
        return Err(Problem::unsupported_media_type());
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Problem::too_large());
    }
    domain::text::json_object(body).map_err(Problem::from)
}

/// A path's parameters, decoded into `T`; a parameter that does not decode is a 422 problem.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(params)| Self(params))
            .map_err(|rejection| Problem::invalid(rejection.body_text()))
    }
}

/// A query string, decoded into `T` (whose serde attributes decide whether unknown parameters
/// are refused); one that does not decode is a 422 problem.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(query)| Self(query))
            .map_err(|rejection| Problem::invalid(rejection.body_text()))
    }
}

/// A JSON answer with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => Problem::unavailable().into_response(),
    }
}

/// An HTTP function as API Gateway reaches it ([`app`]).
pub type App = tower::util::MapRequest<axum::Router, fn(LambdaRequest) -> LambdaRequest>;

/// A request as `lambda_http` hands it over.
pub type LambdaRequest = axum::http::Request<lambda_http::Body>;

/// A function's routes as API Gateway reaches them: the stage API Gateway puts before every
/// path (`/v1/alerts`) taken off before routing, and unknown paths and methods answered as
/// problems.
pub fn app(router: axum::Router) -> App {
    let router = router
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() });
    // Around the router, not inside it: middleware added with `Router::layer` runs after
    // routing, too late to change the path.
    tower::util::MapRequest::new(router, without_stage::<lambda_http::Body> as fn(_) -> _)
}

/// The request with its path relative to the stage: an HTTP API stage other than `$default`
/// prefixes the raw path with `/<stage>`.
fn without_stage<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let stage = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|stage| stage != "$default" && !stage.is_empty()) else {
        return request;
    };
    let uri = request.uri();
    let rest = uri
        .path()
        .strip_prefix('/')
        .and_then(|path| path.strip_prefix(stage.as_str()))
        .filter(|rest| rest.is_empty() || rest.starts_with('/'));
    if let Some(rest) = rest {
        let path = if rest.is_empty() { "/" } else { rest };
        let rebuilt = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        if let Ok(uri) = rebuilt.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Runs the Lambda loop for `app`.
pub async fn serve(app: App) -> Result<(), lambda_runtime::Error> {
    lambda_http::run(app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;

    fn context(claims: serde_json::Value) -> RequestContext {
        let context: ApiGatewayV2httpRequestContext = serde_json::from_value(serde_json::json!({
            "requestId": "r-1",
            "http": { "method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
            "authorizer": { "jwt": { "claims": claims } },
        }))
        .expect("context");
        RequestContext::ApiGatewayV2(context)
    }

    #[test]
    fn the_caller_comes_from_verified_claims_only() {
        let caller = Caller::from_context(&context(serde_json::json!({
            "sub": "ops-1", "scope": "alerts:write alerts:read"
        })))
        .expect("a caller");
        assert_eq!(caller.subject, "ops-1");
        assert_eq!(caller.scopes, ["alerts:write", "alerts:read"]);
        assert_eq!(caller.request_id, "r-1");
        assert_eq!(Caller::from_context(&context(serde_json::json!({}))), None);
        assert_eq!(
            Caller::from_context(&context(serde_json::json!({"sub": ""}))),
            None
        );
        let unauthenticated: ApiGatewayV2httpRequestContext =
            serde_json::from_value(serde_json::json!({
                "requestId": "r-2",
                "http": { "method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
            }))
            .expect("context");
        assert_eq!(
            Caller::from_context(&RequestContext::ApiGatewayV2(unauthenticated)),
            None
        );
    }

    #[test]
    fn bodies_must_be_small_json_objects() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // read by Debug only
        struct Body {
            a: i64,
        }
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(
            json_body::<Body>(&headers, br#"{"a":1}"#)
                .expect_err("no type")
                .status,
            415
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(json_body::<Body>(&headers, br#"{"a":1}"#).is_ok());
        assert_eq!(
            json_body::<Body>(&headers, br#"{"a":1,"b":2}"#)
                .expect_err("unknown")
                .status,
            422
        );
        assert_eq!(
            json_body::<Body>(&headers, b"[1]")
                .expect_err("array")
                .status,
            422
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            json_body::<Body>(&headers, &big).expect_err("big").status,
            413
        );
    }

    #[test]
    fn the_stage_comes_off_the_path_before_routing() {
        let request = |uri: &str, stage: Option<&str>| {
            let mut context = serde_json::json!({
                "requestId": "r",
                "http": { "method": "POST", "path": uri, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1" },
            });
            if let Some(stage) = stage {
                context["stage"] = stage.into();
            }
            let context: ApiGatewayV2httpRequestContext =
                serde_json::from_value(context).expect("context");
            axum::http::Request::builder()
                .uri(uri)
                .extension(RequestContext::ApiGatewayV2(context))
                .body(())
                .expect("request")
        };
        let path =
            |uri: &str, stage: Option<&str>| without_stage(request(uri, stage)).uri().to_string();
        assert_eq!(path("/v1/alerts?x=1", Some("v1")), "/alerts?x=1");
        assert_eq!(path("/v1", Some("v1")), "/");
        assert_eq!(path("/alerts", Some("$default")), "/alerts");
        assert_eq!(path("/v10/alerts", Some("v1")), "/v10/alerts");
        assert_eq!(path("/alerts", None), "/alerts");
    }

    #[test]
    fn server_faults_say_nothing_internal() {
        let problem = Problem::from(WorkerError::retryable(anyhow::anyhow!(
            "password authentication failed for user postgres"
        )));
        assert_eq!(problem.status, 503);
        assert_eq!(problem.detail, None);
        let body = serde_json::to_string(&problem).expect("json");
        assert!(!body.contains("postgres"));
        let refused = Problem::from(WorkerError::rejected(
            domain::error::Flaw::RefusedByStore,
            "database rejected the record: violates check constraint alerts_severity_check",
        ));
        assert_eq!(refused.status, 422);
        assert!(
            !serde_json::to_string(&refused)
                .expect("json")
                .contains("alerts_severity_check")
        );
    }
}
