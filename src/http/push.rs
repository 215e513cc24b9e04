//! Push monitors (`push://`) at the HTTP edge: `/push/{token}`, which a job
//! pings (GET, HEAD or POST, no API key), and `POST
//! /services/{id}/push-token`, which rotates a service's token.
//!
//! A token is shown once, in the answer that made it (the registration or
//! a rotation, as `push_url`); the store keeps only its hash, so reads never
//! show it. A ping records a health log as a check would (a result on the
//! bus, recorded by the recorder with its events and alerts) and tells the
//! scheduler, which moves the service's missed-ping deadline.

use super::AppState;
use super::limit::RateLimiter;
use super::problem::ApiError;
use super::services::PathId;
use super::windows;
use crate::domain::event::ScheduleUpdate;
use crate::domain::push::{self, Report};
use crate::domain::time::{Millis, now_ms};
use crate::domain::validate::FieldError;
use crate::domain::{CheckKind, Service, ServiceId, ServiceSpec};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Largest body a ping may carry. Bodies are read and ignored; a larger
/// one is refused with 413.
pub const MAX_PING_BODY_BYTES: usize = 16 * 1024;

/// Pings a token may make a second, sustained.
pub const PINGS_PER_S: u32 = 1;

/// Pings a token may make at once.
pub const PING_BURST: u32 = 10;

/// Longest a ping waits for the bus to take its result before it is
/// answered 503 (the job may try again).
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// Per-token buckets, shared by the server's workers (the limiter bounds
/// how many tokens it tracks).
static PING_LIMIT: LazyLock<RateLimiter> =
    LazyLock::new(|| RateLimiter::new(PINGS_PER_S, PING_BURST));

/// Most services whose last ping time [`stamp`] remembers.
const MAX_STAMPS: usize = 10_000;

/// The last `scheduled_at` given to each service's ping in this process.
static STAMPS: LazyLock<Mutex<HashMap<ServiceId, Millis>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Mounts the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/push/{token}")
            .route(web::get().to(ping))
            .route(web::head().to(ping))
            .route(web::post().to(ping))
            .default_service(super::other_methods("GET, HEAD, POST, OPTIONS")),
    )
    .service(
        web::resource("/services/{id}/push-token")
            .route(web::post().to(rotate))
            .default_service(super::other_methods("POST, OPTIONS")),
    );
}

/// A fresh token: 128 bits from the OS's random source.
pub(super) fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; push::TOKEN_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| {
        ApiError::Store(crate::store::StoreError::Unsupported(
            "the system's random source failed; cannot make a push token".into(),
        ))
    })?;
    Ok(push::render_token(bytes))
}

/// The answer to a ping.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PingAnswer {
    /// Always true.
    ok: bool,
    /// Present and true when the service is paused (the ping is ignored).
    paused: Option<bool>,
}

/// A service with its push URL, in the one answer that shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WithPushUrl<T> {
    /// The service, as it would be shown without this.
    #[serde(flatten)]
    pub service: T,
    /// `/push/{token}`; only in the answers that made the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_url: Option<String>,
}

/// Adds `push_url` for `token`, if a token was made.
pub fn with_push_url<T>(service: T, token: Option<String>) -> WithPushUrl<T> {
    WithPushUrl {
        service,
        push_url: token.as_deref().map(push::push_url),
    }
}

/// Stores a new service; a push service with a fresh token's hash in the
/// same insert, and that token, to show once.
pub async fn register(
    state: &AppState,
    spec: &ServiceSpec,
    now: Millis,
) -> Result<(Service, Option<String>), ApiError> {
    if CheckKind::of_url(&spec.url) != CheckKind::Push {
        return Ok((state.store.create_service(spec, now).await?, None));
    }
    let token = new_token()?;
    let svc = state
        .store
        .create_push_service(spec, now, &push::token_hash(&token))
        .await?;
    Ok((svc, Some(token)))
}

/// A service that a PUT or PATCH just turned into `push://` gets its token
/// here, to show in that answer; one that was push already keeps its token
/// (`before_url`: its URL before the change). Should this write fail, the
/// service has no token until `POST /services/{id}/push-token` makes one.
pub async fn token_if_new_push(
    state: &AppState,
    svc: Service,
    before_url: Option<&str>,
) -> Result<(Service, Option<String>), ApiError> {
    let was_push = before_url.is_some_and(|u| CheckKind::of_url(u) == CheckKind::Push);
    if was_push || CheckKind::of_url(&svc.url) != CheckKind::Push {
        return Ok((svc, None));
    }
    let token = new_token()?;
    match state
        .store
        .set_push_token(svc.id, &push::token_hash(&token))
        .await?
    {
        Some(svc) => Ok((svc, Some(token))),
        None => Err(ApiError::NotFound(format!("no service with id {}", svc.id))),
    }
}

/// `POST /services/{id}/push-token`: a new token for a push service; the
/// old one stops working at once.
#[utoipa::path(post, path = "/services/{id}/push-token", tag = "services", params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The service with its new `push_url` (shown once)",
            body = WithPushUrl<crate::http::windows::WithMaintenance<crate::domain::Service>>),
        (status = 422, description = "Not a push service")))]
pub async fn rotate(
    PathId(id): PathId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound(format!("no service with id {id}"));
    let svc = state.store.get_service(id).await?.ok_or_else(not_found)?;
    if CheckKind::of_url(&svc.url) != CheckKind::Push {
        return Err(ApiError::Validation(vec![FieldError::new(
            "url",
            "only a push service (push://) has a push token",
        )]));
    }
    let token = new_token()?;
    let svc = state
        .store
        .set_push_token(id, &push::token_hash(&token))
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(service_id = id.get(), "push token rotated");
    let shown = windows::shown_after_write(&state, svc).await;
    Ok(HttpResponse::Ok().json(with_push_url(shown, Some(token))))
}

/// The 404 of every token that names no push service now: the same
/// whether it never existed, was rotated away or its service is gone.
fn unknown_token() -> ApiError {
    ApiError::NotFound("no push monitor has this token".into())
}

/// Reads `status` and `msg`; other parameters are ignored (jobs add cache
/// busters and the like).
fn parse_query(query: &str) -> Result<Report, Vec<FieldError>> {
    let mut status = None;
    let mut msg = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "status" => status = Some(value),
            "msg" => msg = Some(value),
            _ => {}
        }
    }
    Report::parse(status.as_deref(), msg.as_deref())
        .map_err(|message| vec![FieldError::new("status", message)])
}

/// Reads and drops a ping's body, refusing one over
/// [`MAX_PING_BODY_BYTES`] or one that trickles in too slowly.
async fn drop_body(req: &HttpRequest, mut payload: web::Payload) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_PING_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_PING_BODY_BYTES));
    }
    let drain = async {
        let mut seen = 0;
        while let Some(chunk) = payload.next().await {
            seen += chunk.map_err(|e| ApiError::BadBody(e.to_string()))?.len();
            if seen > MAX_PING_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_PING_BODY_BYTES));
            }
        }
        Ok(())
    };
    tokio::time::timeout(super::body::BODY_TIMEOUT, drain)
        .await
        .map_err(|_| ApiError::RequestTimeout(super::body::BODY_TIMEOUT.as_secs()))?
}

/// The `scheduled_at` of a ping of `id` at `now`: `now`, or 1 ms after the
/// service's previous ping if that was as late, so two pings in the same
/// millisecond are two logs (a log is unique by service and
/// `scheduled_at`). The rate limit keeps the drift to a few ms.
fn stamp(id: ServiceId, now: Millis) -> Millis {
    let Ok(mut stamps) = STAMPS.lock() else {
        return now;
    };
    if stamps.len() >= MAX_STAMPS && !stamps.contains_key(&id) {
        // Only stamps not before now still matter.
        stamps.retain(|_, at| *at >= now);
        if stamps.len() >= MAX_STAMPS {
            stamps.clear();
        }
    }
    let at = stamps.get(&id).map_or(now, |last| now.max(last + 1));
    stamps.insert(id, at);
    at
}

/// `GET`, `HEAD` or `POST /push/{token}[?status=up|down][&msg=...]`: the
/// job behind a push service reports in. 200 `{"ok": true}` once recorded;
/// a paused service's pings are answered alike (the job need not know)
/// but not recorded, as a paused service is not checked.
#[utoipa::path(method(get, post), path = "/push/{token}", tag = "push", security(()),
    description = "A job reports in (HEAD too); a body is read and ignored. The token is the credential: no key.",
    params(("token" = String, Path),
        ("status" = Option<String>, Query, description = "`up` (default) or `down`"),
        ("msg" = Option<String>, Query, description = "Text logged with a `down`")),
    responses(
        (status = 200, description = "Recorded (`paused`: ignored, the service is paused)", body = PingAnswer),
        (status = 429, description = "Pinged faster than the token's limit")))]
pub async fn ping(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    drop_body(&req, payload).await?;
    let token = req.match_info().get("token").unwrap_or_default();
    if !push::is_token_form(token) {
        return Err(unknown_token());
    }
    let report = parse_query(req.query_string()).map_err(ApiError::BadQuery)?;
    let hash = push::token_hash(token);
    let svc = state
        .store
        .service_by_push_token(&hash)
        .await?
        // A service turned into another kind keeps its hash, not its pings.
        .filter(|s| CheckKind::of_url(&s.url) == CheckKind::Push)
        .ok_or_else(unknown_token)?;
    if let Err(wait) = PING_LIMIT.take(&hash, Instant::now()) {
        return Err(ApiError::TooManyRequests(wait.as_secs().max(1)));
    }
    if svc.paused {
        return Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true, "paused": true})));
    }
    let at = stamp(svc.id, now_ms());
    // The deadline moves first: the ping proves the job alive even if its
    // log cannot be recorded right now.
    // Losing this costs little: a later ping moves it, and a reload reads
    // the logged ping.
    if let Err(e) = (state.bus)
        .publish_schedule(ScheduleUpdate::Pinged { id: svc.id, at })
        .await
    {
        tracing::warn!(service_id = svc.id.get(), error = %e, "cannot tell the scheduler of a ping");
    }
    let result = report.result(svc.id, at);
    match tokio::time::timeout(PUBLISH_WAIT, state.bus.publish_result(result)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(crate::bus::BusError::Unavailable.into()),
    }
    tracing::debug!(
        service_id = svc.id.get(),
        down = matches!(report, Report::Down(_)),
        "push service pinged"
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_gives_status_and_message_and_ignores_the_rest() {
        assert_eq!(parse_query(""), Ok(Report::Up));
        assert_eq!(parse_query("ts=123&status=up"), Ok(Report::Up));
        assert_eq!(
            parse_query("status=down&msg=disk%20full"),
            Ok(Report::Down("disk full".into()))
        );
        let errors = parse_query("status=sideways").unwrap_err();
        assert_eq!(errors[0].field, "status");
    }

    #[test]
    fn pings_in_one_millisecond_get_distinct_times() {
        let id = ServiceId(-7);
        let a = stamp(id, 1_000);
        let b = stamp(id, 1_000);
        let c = stamp(id, 5_000);
        assert_eq!((a, b, c), (1_000, 1_001, 5_000));
    }

    #[test]
    fn fresh_tokens_differ_and_have_the_token_form() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(push::is_token_form(&a), "{a}");
    }
}
