//! The API's contract, enforced from the one document that states it: every request is checked
//! against the operation's parameters and body in [`openapi::document`] (the document served
//! and committed as `docs/openapi.json`) before its handler runs, so a limit written there —
//! `maxLength`, `minimum`, `pattern`, `format`, an enum, a required body or header, unknown
//! fields — cannot go unchecked. The handlers keep only the rules a schema cannot say (a date
//! within range, a known job, state).
//!
//! Order, as a client reads the answers: the caller (401 without verified claims, 403 without
//! the role: reads need `ops:read`, changes `ops:admin`), then headers (400), then path and
//! query parameters (422), then the body (415 not JSON, 413 over 64 KiB, 422 not as documented).
//!
//! The schemas are JSON Schema 2020-12 (OpenAPI 3.1), checked by the `jsonschema` crate with
//! formats asserted (`date`, `date-time`, `uuid`). A parameter arrives as text and is read as
//! its schema's type first (`integer`, `number`, `boolean`), as OpenAPI's `simple`/`form`
//! styles have it. Each operation's validators are compiled on its first request, so a cold
//! start pays for none it does not use.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, OnceLock};

use adapters::http::{MAX_BODY_BYTES, Problem, is_json};
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::{Method, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::admin::Role;
use jsonschema::Validator;
use serde_json::{Value, json};

use crate::openapi;

/// The contract of the API's document, read once per process.
static CONTRACT: LazyLock<Contract> = LazyLock::new(|| Contract::of(&openapi::document_value()));

/// The middleware (`Router::route_layer`): the request as the document allows it, or the
/// problem that says why not.
pub async fn enforce(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(template) = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    match CONTRACT.check(&template, &mut parts, body).await {
        Ok(body) => next.run(Request::from_parts(parts, body)).await,
        Err(problem) => problem.into_response(),
    }
}

/// Every operation of the document, by method and path template (the router's own syntax).
pub struct Contract {
    /// The document's `components`, which the operations' schemas refer to.
    components: Value,
    operations: HashMap<(Method, String), Operation>,
}

/// One operation as the document states it, its validators compiled on first use.
struct Operation {
    open: bool,
    parameters: Vec<(String, Location, bool, Value)>,
    body: Option<(bool, Value)>,
    compiled: OnceLock<Result<Rules, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
    Header,
}

/// An operation's compiled checks.
struct Rules {
    parameters: Vec<Parameter>,
    body: Option<(bool, Validator)>,
}

struct Parameter {
    name: String,
    location: Location,
    required: bool,
    kind: Kind,
    validator: Validator,
}

/// What a parameter's text is read as before its schema checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Number,
    Boolean,
    Text,
}

impl Contract {
    /// The contract of `document` (an OpenAPI 3.1 document as JSON).
    fn of(document: &Value) -> Self {
        let mut operations = HashMap::new();
        let paths = document["paths"].as_object().into_iter().flatten();
        for (path, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                let parameters = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let location = match p["in"].as_str()? {
                            "path" => Location::Path,
                            "query" => Location::Query,
                            "header" => Location::Header,
                            _ => return None,
                        };
                        Some((
                            p["name"].as_str()?.to_owned(),
                            location,
                            p["required"]
                                .as_bool()
                                .unwrap_or(location == Location::Path),
                            p["schema"].clone(),
                        ))
                    })
                    .collect();
                let body = operation.get("requestBody").map(|body| {
                    (
                        body["required"].as_bool().unwrap_or(false),
                        body["content"]["application/json"]["schema"].clone(),
                    )
                });
                let open = operation["security"]
                    .as_array()
                    .is_some_and(|security| security.is_empty());
                operations.insert(
                    (method, path.clone()),
                    Operation {
                        open,
                        parameters,
                        body,
                        compiled: OnceLock::new(),
                    },
                );
            }
        }
        Self {
            components: document["components"].clone(),
            operations,
        }
    }

    /// The operations the contract knows, as `METHOD path`.
    #[cfg(test)]
    fn operations(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .operations
            .keys()
            .map(|(method, path)| format!("{method} {path}"))
            .collect();
        names.sort();
        names
    }

    /// Checks a request of the operation at `template`; returns its body, read if the
    /// operation takes one.
    async fn check(&self, template: &str, parts: &mut Parts, body: Body) -> Result<Body, Problem> {
        let Some(operation) = self
            .operations
            .get(&(parts.method.clone(), template.to_owned()))
        else {
            return Ok(body);
        };
        if !operation.open {
            let needed = if parts.method == Method::GET {
                Role::Reader
            } else {
                Role::Admin
            };
            crate::auth::caller_with(parts, &(), needed).await?;
        }
        let rules = operation
            .compiled
            .get_or_init(|| self.compile(operation))
            .as_ref()
            .map_err(|err| {
                tracing::error!(operation = template, error = %err, "the document's schema does not compile");
                Problem::unavailable()
            })?;
        rules.check_parameters(parts).await?;
        match &rules.body {
            Some((required, validator)) => check_body(parts, body, *required, validator).await,
            None => Ok(body),
        }
    }

    fn compile(&self, operation: &Operation) -> Result<Rules, String> {
        let parameters = operation
            .parameters
            .iter()
            .map(|(name, location, required, schema)| {
                Ok(Parameter {
                    name: name.clone(),
                    location: *location,
                    required: *required,
                    kind: self.kind_of(schema),
                    validator: self.validator(schema)?,
                })
            })
            .collect::<Result<Vec<Parameter>, String>>()?;
        // Headers first, once: their problems are 400, the others' 422.
        let mut parameters = parameters;
        parameters.sort_by_key(|p| p.location != Location::Header);
        let body = match &operation.body {
            Some((required, schema)) => Some((*required, self.validator(schema)?)),
            None => None,
        };
        Ok(Rules { parameters, body })
    }

    /// A validator of `schema`, its `#/components/...` references resolved in the document's
    /// components.
    fn validator(&self, schema: &Value) -> Result<Validator, String> {
        let root = json!({ "allOf": [schema], "components": self.components });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|err| err.to_string())
    }

    /// What a parameter's text is read as: its schema's type, through a reference.
    fn kind_of(&self, schema: &Value) -> Kind {
        let resolved = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map_or(schema, |name| &self.components["schemas"][name]);
        let types: Vec<&str> = match &resolved["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        match types.into_iter().find(|t| *t != "null") {
            Some("integer") => Kind::Integer,
            Some("number") => Kind::Number,
            Some("boolean") => Kind::Boolean,
            _ => Kind::Text,
        }
    }
}

impl Rules {
    async fn check_parameters(&self, parts: &mut Parts) -> Result<(), Problem> {
        let path: HashMap<String, String> =
            if self.parameters.iter().any(|p| p.location == Location::Path) {
                let raw = RawPathParams::from_request_parts(parts, &())
                    .await
                    .map_err(|_| Problem::invalid("a path parameter is not valid UTF-8"))?;
                raw.iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .collect()
            } else {
                HashMap::new()
            };
        let query = query_pairs(parts.uri.query().unwrap_or_default())?;
        let known = |name: &str| {
            self.parameters
                .iter()
                .any(|p| p.location == Location::Query && p.name == name)
        };
        if let Some((name, _)) = query.iter().find(|(name, _)| !known(name)) {
            return Err(Problem::invalid(format!(
                "unknown query parameter {name:?}"
            )));
        }
        // In the order `compile` left them: headers first.
        for parameter in &self.parameters {
            let value = match parameter.location {
                Location::Path => path.get(&parameter.name).map(String::as_str),
                Location::Query => query
                    .iter()
                    .find(|(name, _)| *name == parameter.name)
                    .map(|(_, value)| value.as_str()),
                Location::Header => match parts.headers.get(&parameter.name) {
                    Some(value) => Some(value.to_str().map_err(|_| {
                        Problem::bad_request(format!(
                            "the {} header is not visible ASCII",
                            parameter.name
                        ))
                    })?),
                    None => None,
                },
            };
            parameter.check(value)?;
        }
        Ok(())
    }
}

impl Parameter {
    fn check(&self, value: Option<&str>) -> Result<(), Problem> {
        let (what, problem): (String, fn(String) -> Problem) = match self.location {
            Location::Header => (format!("the {} header", self.name), |detail| {
                Problem::bad_request(detail)
            }),
            Location::Path => (format!("path parameter {}", self.name), |detail| {
                Problem::invalid(detail)
            }),
            Location::Query => (format!("query parameter {}", self.name), |detail| {
                Problem::invalid(detail)
            }),
        };
        let Some(text) = value else {
            return if self.required {
                Err(problem(format!("{what} is missing")))
            } else {
                Ok(())
            };
        };
        let value = match self.kind {
            Kind::Integer => text.parse::<i64>().map(Value::from).ok(),
            Kind::Number => text
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(Value::from),
            Kind::Boolean => match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            Kind::Text => Some(Value::String(text.to_owned())),
        };
        let Some(value) = value else {
            let kind = match self.kind {
                Kind::Integer => "a 64-bit integer",
                Kind::Number => "a number",
                Kind::Boolean => "true or false",
                Kind::Text => "text",
            };
            return Err(problem(format!("{what} must be {kind}")));
        };
        match self.validator.iter_errors(&value).next() {
            Some(err) => Err(problem(format!("{what}: {}", err.masked_with("the value")))),
            None => Ok(()),
        }
    }
}

/// The query string's pairs, decoded; a parameter given twice is refused (no operation takes a
/// list).
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Problem> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| Problem::invalid("the query string cannot be read"))?;
    let mut seen = HashSet::new();
    for (name, _) in &pairs {
        if !seen.insert(name.as_str()) {
            return Err(Problem::invalid(format!(
                "query parameter {name:?} is given more than once"
            )));
        }
    }
    Ok(pairs)
}

/// Reads and checks a JSON body: its type, its size, that it is there when required, and its
/// schema. Returns it for the handler.
async fn check_body(
    parts: &Parts,
    body: Body,
    required: bool,
    validator: &Validator,
) -> Result<Body, Problem> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| Problem::too_large())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if required {
            Err(Problem::invalid("the body is required (a JSON object)"))
        } else {
            Ok(Body::from(bytes))
        };
    }
    if !is_json(&parts.headers) {
        return Err(Problem::unsupported_media_type());
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|err| Problem::invalid(format!("the body is not JSON: {err}")))?;
    if let Some(err) = validator.iter_errors(&value).next() {
        let at = err.instance_path().to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        return Err(Problem::invalid(format!(
            "the body at {at}: {}",
            err.masked_with("the value")
        )));
    }
    Ok(Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation's schemas compile: a document the contract could not read would answer
    /// 503 on the operation's first request, not fail here.
    #[test]
    fn every_operation_of_the_document_compiles() {
        let contract = Contract::of(&openapi::document_value());
        assert_eq!(contract.operations().len(), 28);
        for operation in contract.operations.values() {
            if let Err(err) = contract.compile(operation) {
                panic!("{err}");
            }
        }
    }

    /// No documented length or range of a parameter goes unchecked: for each, the value at
    /// the limit passes and the one past it is refused (the limits read from the document,
    /// the answers from its meaning).
    #[test]
    fn every_parameter_limit_in_the_document_is_enforced() {
        let document = openapi::document_value();
        let contract = Contract::of(&document);
        let mut checked = 0;
        for operation in contract.operations.values() {
            let Ok(rules) = contract.compile(operation) else {
                panic!("does not compile");
            };
            for parameter in &rules.parameters {
                let Some((_, _, _, schema)) = operation
                    .parameters
                    .iter()
                    .find(|(name, at, ..)| *name == parameter.name && *at == parameter.location)
                else {
                    panic!("{} is not in the document", parameter.name);
                };
                let pattern = schema["pattern"].as_str();
                if let Some(max) = schema["maxLength"].as_u64() {
                    let fill = if pattern.is_some() { "!" } else { "a" };
                    let max = usize::try_from(max).unwrap_or(usize::MAX);
                    assert!(
                        parameter.check(Some(&fill.repeat(max))).is_ok(),
                        "{}",
                        parameter.name
                    );
                    assert!(
                        parameter.check(Some(&fill.repeat(max + 1))).is_err(),
                        "{}",
                        parameter.name
                    );
                    checked += 1;
                }
                if let Some(min) = schema["minimum"].as_i64() {
                    let max = schema["maximum"].as_i64();
                    assert!(
                        parameter.check(Some(&min.to_string())).is_ok(),
                        "{}",
                        parameter.name
                    );
                    assert!(
                        parameter.check(Some(&(min - 1).to_string())).is_err(),
                        "{}",
                        parameter.name
                    );
                    if let Some(max) = max {
                        assert!(parameter.check(Some(&max.to_string())).is_ok());
                        assert!(parameter.check(Some(&(max + 1).to_string())).is_err());
                    }
                    checked += 1;
                }
                if parameter.required {
                    assert!(parameter.check(None).is_err(), "{}", parameter.name);
                }
            }
        }
        // consumer (2), topic, job, request_id, Idempotency-Key (8), the ids' minimum and
        // every list's limit: the count guards against the loop checking nothing.
        assert!(checked >= 20, "only {checked} limits found");
    }

    #[test]
    fn parameters_are_read_as_their_schema_type() {
        let contract = Contract::of(&openapi::document_value());
        let operation =
            &contract.operations[&(Method::GET, "/admin/backfill/advertisers".to_owned())];
        let Ok(rules) = contract.compile(operation) else {
            panic!("does not compile");
        };
        let by_name = |name: &str| {
            rules
                .parameters
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.kind)
        };
        assert_eq!(by_name("limit"), Some(Kind::Integer));
        assert_eq!(by_name("active"), Some(Kind::Boolean));
        assert_eq!(by_name("type"), Some(Kind::Text));
        assert_eq!(by_name("cursor"), Some(Kind::Text));
        let active = rules.parameters.iter().find(|p| p.name == "active");
        assert!(
            active.is_some_and(|p| p.check(Some("true")).is_ok() && p.check(Some("yes")).is_err())
        );
        let kind = rules.parameters.iter().find(|p| p.name == "type");
        assert!(
            kind.is_some_and(|p| p.check(Some("NEW")).is_ok() && p.check(Some("OLD")).is_err())
        );
        assert!(query_pairs("a=1&a=2").is_err());
        assert_eq!(
            query_pairs("a=%20b").ok(),
            Some(vec![("a".into(), " b".into())])
        );
    }
}
