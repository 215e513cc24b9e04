//! The API's one error type and its mapping to RFC 9457 problem details.
//!
//! Handlers return [`ApiError`]; this is the only place that decides status
//! codes and the `application/problem+json` body.

use crate::bus::BusError;
use crate::domain::validate::FieldError;
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// At most 10 failed requests are logged a second; clients can cause them (the
/// WebSocket cap, or any request while the store is down).
static FAILED_REQUESTS: super::log_budget::LogBudget = super::log_budget::LogBudget::new(10);

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Fields failed validation (422).
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// Query parameters failed validation (400).
    #[error("the query string has invalid parameters")]
    BadQuery(Vec<FieldError>),
    /// The body is not JSON (400).
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is not declared as JSON (415).
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// The body is over the limit (413).
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body could not be read (400).
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this path (405); lists those that are.
    #[error("method not allowed on this path; allowed: {0}")]
    MethodNotAllowed(&'static str),
    /// The body did not arrive in time (408); seconds allowed.
    #[error("the request body did not arrive within {0} s")]
    RequestTimeout(u64),
    /// The request's headers are too large (431).
    #[error("the request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// No or an unknown API key (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Over a rate limit: writes per caller, pings per push token (429);
    /// seconds to wait.
    #[error("too many requests; retry in {0} s")]
    TooManyRequests(u64),
    /// Not allowed for this client (403).
    #[error("{0}")]
    Forbidden(String),
    /// A concurrent change won (409).
    #[error("{0}")]
    Conflict(String),
    /// Not a WebSocket handshake (400).
    #[error("{0}")]
    BadRequest(String),
    /// Too many WebSocket clients (503).
    #[error("too many WebSocket clients (limit {0})")]
    TooManyClients(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed (503).
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Something this answer needs is out of reach (503): the cause, for
    /// the log.
    #[error("{0}")]
    Unavailable(String),
}

/// An RFC 9457 problem: every error answer's body.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem<'a> {
    /// A URN naming the kind of problem (`urn:healthmon:problem:...`).
    #[serde(rename = "type")]
    kind: &'a str,
    /// The kind of problem, for a person.
    title: &'a str,
    /// The HTTP status.
    status: u16,
    /// What went wrong this time.
    detail: String,
    /// Each bad field or query parameter (422, and 400 for a query).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>, nullable = false)]
    errors: Option<&'a [FieldError]>,
}

impl ApiError {
    fn kind_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Validation(_) => ("urn:healthmon:problem:validation", "Invalid request"),
            ApiError::BadQuery(_) => (
                "urn:healthmon:problem:bad-query",
                "Invalid query parameters",
            ),
            ApiError::MalformedJson(_) => {
                ("urn:healthmon:problem:malformed-json", "Malformed JSON")
            }
            ApiError::UnsupportedMediaType => (
                "urn:healthmon:problem:unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::PayloadTooLarge(_) => (
                "urn:healthmon:problem:payload-too-large",
                "Payload too large",
            ),
            ApiError::BadBody(_) | ApiError::BadRequest(_) => {
                ("urn:healthmon:problem:bad-request", "Bad request")
            }
            ApiError::NotFound(_) => ("urn:healthmon:problem:not-found", "Not found"),
            ApiError::Conflict(_) => ("urn:healthmon:problem:conflict", "Conflict"),
            ApiError::Forbidden(_) => ("urn:healthmon:problem:forbidden", "Forbidden"),
            ApiError::Unauthorized(_) => ("urn:healthmon:problem:unauthorized", "Unauthorized"),
            ApiError::RequestTimeout(_) => {
                ("urn:healthmon:problem:request-timeout", "Request timeout")
            }
            ApiError::HeadersTooLarge(_) => (
                "urn:healthmon:problem:headers-too-large",
                "Request header fields too large",
            ),
            ApiError::TooManyRequests(_) => {
                ("urn:healthmon:problem:rate-limited", "Too many requests")
            }
            ApiError::MethodNotAllowed(_) => (
                "urn:healthmon:problem:method-not-allowed",
                "Method not allowed",
            ),
            ApiError::TooManyClients(_) => {
                ("urn:healthmon:problem:too-many-clients", "Too many clients")
            }
            ApiError::Store(e) if e.is_unavailable() => {
                ("urn:healthmon:problem:unavailable", "Service unavailable")
            }
            ApiError::Bus(_) | ApiError::Unavailable(_) => {
                ("urn:healthmon:problem:unavailable", "Service unavailable")
            }
            ApiError::Store(_) => ("urn:healthmon:problem:internal", "Internal error"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadQuery(_)
            | ApiError::MalformedJson(_)
            | ApiError::BadBody(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManyClients(_) | ApiError::Bus(_) | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (kind, title) = self.kind_and_title();
        let detail = if status.is_server_error() {
            // The cause goes to the log; the client learns only that it was us.
            if let Some(suppressed) = FAILED_REQUESTS.take() {
                match self {
                    // A client at the cap is not a fault of ours.
                    ApiError::TooManyClients(_) => {
                        tracing::info!(error = %self, suppressed, "request refused");
                    }
                    _ => tracing::error!(error = %self, suppressed, "request failed"),
                }
            }
            match self {
                ApiError::TooManyClients(_) => self.to_string(),
                _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                    "a backing service is unavailable; try again shortly".to_owned()
                }
                _ => "an internal error occurred; it has been logged".to_owned(),
            }
        } else {
            self.to_string()
        };
        let errors = match self {
            ApiError::Validation(e) | ApiError::BadQuery(e) => Some(e.as_slice()),
            _ => None,
        };
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::MethodNotAllowed(allow) => {
                response.insert_header((actix_web::http::header::ALLOW, *allow));
            }
            ApiError::Unauthorized(_) => {
                response.insert_header((
                    actix_web::http::header::WWW_AUTHENTICATE,
                    "Bearer realm=\"healthmon\"",
                ));
            }
            ApiError::TooManyRequests(secs) => {
                response.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
            }
            _ => {}
        }
        response
            .content_type("application/problem+json")
            .json(Problem {
                kind,
                title,
                status: status.as_u16(),
                detail,
                errors,
            })
    }
}
