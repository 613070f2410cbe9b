//! An API Gateway HTTP API, run locally: the template's `HttpApi` events become routes at
//! `http://…/<stage>/<path>`, each request is checked by the API's JWT authorizer (RS256 by a key
//! of a JWKS file, issuer and audience as the template configures them, not expired), and the
//! function is invoked with the payload-2.0 event API Gateway sends, verified claims included. A
//! request without a valid token is answered `401 {"message":"Unauthorized"}` without invoking
//! anything, as API Gateway does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use adapters::jwt::Verifier;
use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::invoke::{Invocation, Invoker};

/// One route: a function's `HttpApi` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub function: String,
    pub method: String,
    pub path: String,
    pub stage: String,
    /// The API's JWT authorizer: issuer and audience; `None` for an open route.
    pub jwt: Option<(String, String)>,
}

/// The `HttpApi` events of every function in the template (JSON form), with their API's stage
/// and JWT authorizer.
pub fn routes(template: &Value) -> anyhow::Result<Vec<Route>> {
    let resources = template["Resources"]
        .as_object()
        .context("the template has no Resources")?;
    let mut routes = Vec::new();
    for resource in resources.values() {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let function = resource["Properties"]["CodeUri"]
            .as_str()
            .and_then(|uri| uri.trim_end_matches('/').rsplit('/').next())
            .context("a function without CodeUri")?
            .to_owned();
        let Some(events) = resource["Properties"]["Events"].as_object() else {
            continue;
        };
        for event in events.values().filter(|e| e["Type"] == "HttpApi") {
            let props = &event["Properties"];
            let api = &resources[props["ApiId"]["Ref"].as_str().unwrap_or_default()]["Properties"];
            let authorizer = props["Auth"]["Authorizer"]
                .as_str()
                .or_else(|| api["Auth"]["DefaultAuthorizer"].as_str());
            let jwt = match authorizer {
                None | Some("NONE") => None,
                Some(name) => {
                    let config = &api["Auth"]["Authorizers"][name]["JwtConfiguration"];
                    let issuer = config["issuer"]
                        .as_str()
                        .context("a JWT authorizer without issuer")?;
                    let audience = config["audience"][0]
                        .as_str()
                        .context("a JWT authorizer without audience")?;
                    Some((issuer.to_owned(), audience.to_owned()))
                }
            };
            routes.push(Route {
                function: function.clone(),
                method: props["Method"]
                    .as_str()
                    .unwrap_or("ANY")
                    .to_ascii_uppercase(),
                path: props["Path"].as_str().unwrap_or("/").to_owned(),
                stage: api["StageName"].as_str().unwrap_or("$default").to_owned(),
                jwt,
            });
        }
    }
    Ok(routes)
}

/// The gateway: its routes, each JWT route's verifier, and the invoke API.
#[derive(Clone)]
pub struct HttpGateway {
    routes: Arc<Vec<(Route, Option<Verifier>)>>,
    invoker: Invoker,
}

impl HttpGateway {
    /// `jwks` is the issuers' key set (JSON) every JWT route is verified with.
    pub fn new(routes: Vec<Route>, jwks: &str, invoker: Invoker) -> anyhow::Result<Self> {
        let routes = routes
            .into_iter()
            .map(|route| {
                let verifier = match &route.jwt {
                    Some((issuer, audience)) => Some(Verifier::new(jwks, issuer, audience)?),
                    None => None,
                };
                Ok((route, verifier))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            routes: Arc::new(routes),
            invoker,
        })
    }

    pub fn router(self) -> Router {
        Router::new().fallback(request).with_state(self)
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

async fn request(
    State(gateway): State<HttpGateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    // API Gateway's choice among the routes that match: the most specific path (fewest
    // parameters, a greedy one last), then the route of this method before ANY.
    let found = gateway
        .routes
        .iter()
        .filter(|(route, _)| {
            let full = match route.stage.as_str() {
                "$default" => route.path.clone(),
                stage => format!("/{stage}{}", route.path),
            };
            matches(&full, path) && (route.method == "ANY" || route.method == method.as_str())
        })
        .min_by_key(|(route, _)| {
            let params = route.path.matches('{').count();
            (route.path.contains("+}"), params, route.method == "ANY")
        });
    let Some((route, verifier)) = found else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut authorizer = Value::Null;
    if let Some(verifier) = verifier {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(adapters::jwt::bearer)
            .unwrap_or_default();
        match verifier.verify(token) {
            Ok(claims) => {
                authorizer = json!({ "jwt": { "claims": claim_strings(&claims), "scopes": null } })
            }
            Err(refused) => {
                eprintln!("http: {} {path} refused: {refused}", method);
                return message(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
        }
    }
    let event = event(route, &method, &uri, &headers, &body, authorizer);
    match gateway.invoker.invoke(&route.function, &event).await.0 {
        Invocation::Returned(answer) => response(&answer),
        other => {
            eprintln!("http: {} failed: {other:?}", route.function);
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// Whether a request's `path` matches a route's `template`: `{name}` takes one segment, a last
/// `{name+}` the rest of the path (one segment or more).
fn matches(template: &str, path: &str) -> bool {
    let mut wanted = template.trim_start_matches('/').split('/');
    let mut given = path.trim_start_matches('/').split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(segment), Some(actual))
                if segment.starts_with('{') && segment.ends_with("+}") =>
            {
                return !actual.is_empty() && wanted.next().is_none();
            }
            (Some(segment), Some(actual)) if segment.starts_with('{') && segment.ends_with('}') => {
                if actual.is_empty() {
                    return false;
                }
            }
            (Some(segment), Some(actual)) if segment == actual => {}
            _ => return false,
        }
    }
}

/// Claims as API Gateway passes them: every value a string.
fn claim_strings(claims: &adapters::jwt::Claims) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = claims
        .other
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Array(items) => format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    out.insert("sub".to_owned(), claims.sub.clone());
    if let Some(scope) = &claims.scope {
        out.insert("scope".to_owned(), scope.clone());
    }
    out
}

/// The payload-2.0 event.
fn event(
    route: &Route,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    authorizer: Value,
) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let route_key = format!("{} {}", route.method, route.path);
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => {
            use base64::Engine as _;
            (base64::engine::general_purpose::STANDARD.encode(body), true)
        }
    };
    let mut context = json!({
        "accountId": "000000000000",
        "apiId": "localhttp",
        "domainName": "127.0.0.1",
        "domainPrefix": "127",
        "http": {
            "method": method.as_str(), "path": uri.path(), "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
        },
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": route_key,
        "stage": route.stage,
        "timeEpoch": now.as_millis() as u64,
    });
    if !authorizer.is_null() {
        context["authorizer"] = authorizer;
    }
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or_default(),
        "headers": headers,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// The function's answer (payload 2.0) as the HTTP response.
fn response(answer: &Value) -> Response {
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|code| StatusCode::from_u16(u16::try_from(code).ok()?).ok())
        .unwrap_or(StatusCode::OK);
    let body = answer["body"].as_str().unwrap_or_default();
    let body = if answer["isBase64Encoded"] == true {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut response = (status, body).into_response();
    if let Some(headers) = answer["headers"].as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(name.as_str()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_as_api_gateway_matches_them() {
        assert!(matches("/v1/alerts", "/v1/alerts"));
        assert!(!matches("/v1/alerts", "/v1/alerts/1"));
        assert!(matches("/v1/a/{id}/b", "/v1/a/7/b"));
        assert!(!matches("/v1/a/{id}/b", "/v1/a//b"));
        assert!(matches("/v1/admin/{proxy+}", "/v1/admin/jobs/runs/1"));
        assert!(matches("/v1/admin/{proxy+}", "/v1/admin/health"));
        assert!(!matches("/v1/admin/{proxy+}", "/v1/admin"));
        assert!(!matches("/v1/admin/{proxy+}", "/v1/admin/"));
        assert!(!matches("/v1/admin/{proxy+}", "/v1/alerts"));
    }

    #[test]
    fn routes_come_with_their_apis_stage_and_authorizer() {
        let template = json!({"Resources": {
            "Api": {"Type": "AWS::Serverless::HttpApi", "Properties": {
                "StageName": "v1",
                "Auth": {"DefaultAuthorizer": "Jwt", "Authorizers": {"Jwt": {"JwtConfiguration": {
                    "issuer": "https://issuer/", "audience": ["ops"]}}}}}},
            "Intake": {"Type": "AWS::Serverless::Function", "Properties": {
                "CodeUri": "functions/alert-intake",
                "Events": {
                    "Create": {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "Api"}, "Path": "/alerts", "Method": "post"}},
                    "Health": {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "Api"}, "Path": "/health", "Method": "GET",
                                                                  "Auth": {"Authorizer": "NONE"}}},
                    "Queue": {"Type": "SQS", "Properties": {}}}}}}});
        let mut routes = routes(&template).expect("routes");
        routes.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            routes,
            vec![
                Route {
                    function: "alert-intake".into(),
                    method: "POST".into(),
                    path: "/alerts".into(),
                    stage: "v1".into(),
                    jwt: Some(("https://issuer/".into(), "ops".into())),
                },
                Route {
                    function: "alert-intake".into(),
                    method: "GET".into(),
                    path: "/health".into(),
                    stage: "v1".into(),
                    jwt: None,
                },
            ]
        );
    }

    #[test]
    fn the_functions_answer_becomes_the_response() {
        let answer = json!({"statusCode": 202, "headers": {"content-type": "application/json"},
                            "body": "{\"id\":1}", "isBase64Encoded": false});
        let response = response(&answer);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["content-type"], "application/json");
        let encoded = json!({"statusCode": 200, "body": "aGk=", "isBase64Encoded": true});
        assert_eq!(response_status_and_len(&encoded), (200, 2));
    }

    fn response_status_and_len(answer: &Value) -> (u16, u64) {
        let response = response(answer);
        let len = axum::body::HttpBody::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        (response.status().as_u16(), len)
    }
}
