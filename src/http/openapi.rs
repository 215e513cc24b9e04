//! `GET /openapi.json`: the OpenAPI 3.1 description of every route,
//! generated at compile time from the handlers' `#[utoipa::path]`
//! annotations and the `ToSchema` types they answer with, so it follows the
//! code. Reading it needs the read scope like every other GET (it is open
//! while the API is); `tests/openapi.rs` checks that every route the router
//! mounts is in it, and CI fuzzes the server against it with schemathesis.
//!
//! Annotations name each operation's own answers; [`Conventions`] adds the
//! problem answers that every route of a kind shares, by rule: 401 and 403
//! where a key is needed, 400/413/415/422 where a JSON body is read, 400 for
//! a bad query, 404 for a path that names something, 429 on writes (the
//! write rate limit), 503 while the store or the bus is away.

pub mod bodies;

use super::problem::ApiError;
use actix_web::HttpResponse;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::{
    alerts, bulk, channels, dashboard, health, logs, metrics, push, regions, services,
    status_pages, status_public, uptime, windows, ws,
};

/// The document's source: every annotated handler.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "healthmon",
        description = "A self-hosted service monitor's REST API. Errors are RFC 9457 problem \
            details (application/problem+json). Every GET also answers HEAD. Once an API key \
            exists, every route but the public ones needs `Authorization: Bearer <token>`; a \
            `read` key may only read."
    ),
    paths(
        services::list, services::create, services::get, services::replace, services::update,
        services::delete, bulk::create, logs::list, uptime::get, push::rotate, push::ping,
        health::healthz, health::readyz, regions::list, metrics::get, ws::connect,
        channels::list, channels::create, channels::get, channels::replace, channels::update,
        channels::delete, channels::test,
        alerts::list, alerts::get,
        windows::list, windows::create, windows::get, windows::replace, windows::update,
        windows::delete,
        status_pages::list, status_pages::create, status_pages::get, status_pages::update,
        status_pages::delete, status_public::page, status_public::badge,
        dashboard::index, dashboard::file,
        get,
    ),
    components(schemas(super::problem::Problem, crate::domain::validate::FieldError)),
    security(("bearer" = [])),
    modifiers(&Conventions),
)]
pub struct ApiDoc;

/// The document as JSON, made once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi().to_json().unwrap_or_else(|e| {
            // Cannot happen: the document is plain maps and strings.
            tracing::error!(error = %e, "cannot encode the OpenAPI document");
            String::from("{}")
        })
    })
}

/// `GET /openapi.json`
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)))]
pub async fn get() -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(document()))
}

/// The problem answers shared by every route of a kind, and the bearer
/// scheme (see the module's documentation).
pub struct Conventions;

/// The shared problem answers: status, component name, when.
const PROBLEMS: [(&str, &str, &str); 10] = [
    (
        "400",
        "BadRequest",
        "Malformed JSON, an unreadable body or a bad query parameter (named in `errors`)",
    ),
    (
        "401",
        "Unauthorized",
        "No or an unknown API key (once a key exists)",
    ),
    (
        "403",
        "Forbidden",
        "A `read` key on a write, or a request naming a non-loopback host while the API is open on loopback",
    ),
    ("404", "NotFound", "Nothing has that id"),
    (
        "409",
        "Conflict",
        "A concurrent change won, or a limit is reached",
    ),
    ("413", "PayloadTooLarge", "The body is over the limit"),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not declared as application/json",
    ),
    (
        "422",
        "Validation",
        "Fields failed validation (each named in `errors`); nothing was stored",
    ),
    (
        "429",
        "TooManyRequests",
        "Over the write rate limit (or a push token's ping limit); see Retry-After",
    ),
    (
        "503",
        "Unavailable",
        "The store or the bus does not answer; try again shortly",
    ),
];

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("head", item.head.as_mut()),
        ("post", item.post.as_mut()),
        ("put", item.put.as_mut()),
        ("patch", item.patch.as_mut()),
        ("delete", item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
}

/// Whether an operation is annotated `security(())`: no key needed.
fn is_public(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|reqs| {
        reqs.iter()
            .any(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
    })
}

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `healthmon keys create` (it starts with `hm_`)",
                    ))
                    .build(),
            ),
        );
        for (_, name, description) in PROBLEMS {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(problem_response(description)));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                // The handlers' names (`list`, `get`) repeat across
                // resources; method and path are unique: `get_services_id`.
                let id: String = format!("{method}{path}")
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join("_");
                op.operation_id = Some(id);
                let write = !matches!(method, "get" | "head");
                let public = is_public(op);
                let params = op.parameters.iter().flatten();
                let (mut query, mut in_path) = (false, false);
                for p in params {
                    if let RefOr::T(p) = p {
                        query |= p.parameter_in == ParameterIn::Query;
                        in_path |= p.parameter_in == ParameterIn::Path;
                    }
                }
                let body = op.request_body.is_some();
                let wanted = [
                    ("400", query || body),
                    ("401", !public),
                    ("403", !public),
                    ("404", in_path),
                    ("413", body),
                    ("415", body),
                    ("422", body),
                    ("429", write && !public),
                    ("503", path != "/healthz" && path != "/openapi.json"),
                ];
                // An annotation's own error answers (409, ...) say when; the
                // body is a problem like every other error's.
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(r) = response
                        && !status.starts_with(['1', '2', '3'])
                        && r.content.is_empty()
                    {
                        *r = problem_response(&r.description);
                    }
                }
                for (status, want) in wanted {
                    let Some((_, name, _)) = PROBLEMS.iter().find(|(s, _, _)| *s == status) else {
                        continue;
                    };
                    if want {
                        op.responses
                            .responses
                            .entry(status.to_owned())
                            .or_insert_with(|| {
                                RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                            });
                    }
                }
                if public {
                    // Open to all: no requirement at all, rather than `{}`.
                    op.security = Some(vec![SecurityRequirement::default()]);
                }
            }
        }
    }
}
