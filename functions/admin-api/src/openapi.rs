//! The API's OpenAPI 3.1 document, generated from the handlers' annotations and the types they
//! answer with (utoipa), so it cannot drift from the code. What every operation shares is added
//! here once: the JWT requirement (every operation but health), the problem answers, and the
//! `Idempotency-Key` header of every change. Committed as `docs/openapi.json` (a test keeps the
//! two equal) and served at `GET /admin/openapi.json`.

use std::sync::Arc;

use adapters::http::{Problem, json};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, Required, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::{Deps, Reader, backfill, health, insights, jobs, operations};

/// The only operation without the authorizer.
pub const OPEN_PATH: &str = "/admin/health";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "adworkers admin API",
        version = "1.0.0",
        description = "The operators' API: CDP backfill control, scheduled jobs, dead letters, outcomes and health. Every operation but GET /admin/health needs a bearer JWT of the console's issuer and audience; reads need the scope ops:read or ops:admin, changes ops:admin and an Idempotency-Key. Lists are paginated with the opaque next_cursor of the previous page. Errors are application/problem+json (RFC 9457).",
    ),
    servers((url = "/v1", description = "The HTTP API's stage")),
    paths(
        health::health,
        serve,
        backfill::status,
        backfill::advertisers,
        backfill::add,
        backfill::advertiser,
        backfill::progress,
        backfill::months,
        backfill::running,
        backfill::trigger,
        backfill::retry,
        backfill::activate,
        backfill::deactivate,
        jobs::jobs,
        jobs::runs,
        jobs::run,
        jobs::execute,
        jobs::execution,
        jobs::statistics,
        operations::dead_letter_summary,
        operations::dead_letters,
        operations::redrive,
        operations::coupon_outcome,
        operations::alert_deliveries,
        operations::rollup_reviews,
        operations::resolve_review,
        insights::weekly,
        insights::reader,
    ),
    components(schemas(
        Problem,
        backfill::AdvertiserType,
        backfill::MonthStateName,
        backfill::InFlight,
        operations::DeliveryState,
        operations::Channel,
        operations::ReviewStatus,
    )),
    modifiers(&Shared),
    tags(
        (name = "backfill", description = "The CDP backfill (seed 001's /api/v2/batch)"),
        (name = "jobs", description = "The scheduled jobs (seed 002's /api/v1/worker/tasks)"),
        (name = "operations", description = "Dead letters, outcomes, reviews and health"),
        (name = "insights", description = "TOONPICK's stored results: weekly analyses, readers' recommendations"),
    )
)]
pub struct ApiDoc;

/// The document, as served and committed.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as a JSON value, as the contract reads it ([`crate::contract`]).
pub fn document_value() -> serde_json::Value {
    serde_json::to_value(document()).unwrap_or_default()
}

/// The document as JSON text, as `docs/openapi.json` holds it.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_default() + "\n"
}

#[utoipa::path(get, path = "/admin/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn serve(State(_): State<Arc<Deps>>, _: Reader) -> Result<Response, Problem> {
    Ok(json(StatusCode::OK, &document()))
}

/// What every operation shares.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A token of the console's issuer for the API's audience, with ops:read or ops:admin in its scope claim.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in &mut openapi.paths.paths {
            for (change, operation) in [(false, &mut item.get), (true, &mut item.post)] {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                if path == OPEN_PATH {
                    operation.security = Some(Vec::new());
                    continue;
                }
                operation.security =
                    Some(vec![SecurityRequirement::new("jwt", Vec::<String>::new())]);
                problems(operation, change);
                if change {
                    operation
                        .parameters
                        .get_or_insert_with(Vec::new)
                        .push(idempotency_key());
                }
            }
        }
    }
}

/// The problem answers an operation may give, besides its own.
fn problems(operation: &mut Operation, change: bool) {
    let mut answers = vec![
        (
            "401",
            "No valid token (API Gateway's authorizer, or no verified claims)",
        ),
        ("403", "The token's scopes do not allow this"),
        ("404", "Not found"),
        (
            "422",
            "A parameter or the body is not valid: detail says which",
        ),
        ("503", "A dependency failed; retry"),
    ];
    if change {
        answers.extend([
            ("400", "The Idempotency-Key header is missing or malformed"),
            (
                "409",
                "The change conflicts with the resource's state, or its key is in progress",
            ),
            ("413", "The body is larger than 64 KiB"),
            ("415", "The body is not application/json"),
        ]);
    }
    for (status, description) in answers {
        let mut response = ResponseBuilder::new().description(description).content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
        if status == "401" {
            // The authorizer refuses before the function runs, with API Gateway's own body.
            response = response.content("application/json", gateway_message());
        }
        let response = response.build();
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert(response.into());
    }
    // API Gateway's own answer when the stage's throttle refuses a request.
    let throttled = ResponseBuilder::new()
        .description("Throttled by the stage (API Gateway's own answer)")
        .content("application/json", gateway_message())
        .build();
    operation
        .responses
        .responses
        .entry("429".to_owned())
        .or_insert(throttled.into());
}

/// API Gateway's own error body: `{"message": "Unauthorized"}`, `{"message": "Too Many Requests"}`.
fn gateway_message() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("message", ObjectBuilder::new().schema_type(Type::String))
                .required("message"),
        ))
        .build()
}

fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(
            "The client's key for this change: a repeat with the same key and request gets the first answer again; with another request, 422.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = "../../docs/openapi.json";

    /// `docs/openapi.json` is the generated document; `UPDATE_OPENAPI=1 cargo test -p
    /// admin-api` rewrites it after a change of the API.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
        let generated = document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is not the generated document: run UPDATE_OPENAPI=1 cargo test -p admin-api"
        );
    }

    #[test]
    fn every_operation_but_health_requires_the_token() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).expect("json");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("item") {
                operations += 1;
                let security = operation["security"].as_array().expect("security stated");
                if path == OPEN_PATH {
                    assert!(security.is_empty(), "{method} {path} is open");
                } else {
                    assert_eq!(
                        security,
                        &vec![serde_json::json!({"jwt": []})],
                        "{method} {path}"
                    );
                    assert!(operation["responses"]["401"].is_object(), "{method} {path}");
                }
                if method == "post" {
                    let params = operation["parameters"].as_array().expect("parameters");
                    assert!(
                        params.iter().any(|p| p["name"] == "Idempotency-Key"
                            && p["in"] == "header"
                            && p["required"] == true),
                        "{method} {path} takes no Idempotency-Key"
                    );
                }
            }
        }
        assert_eq!(operations, 28);
        // Every reference resolves.
        let text = document_json();
        for (at, _) in text.match_indices("#/components/schemas/") {
            let name: String = text[at + 21..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "{name} is referenced but not defined"
            );
        }
    }
}
