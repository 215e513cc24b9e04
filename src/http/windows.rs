//! Maintenance windows: `/maintenance`, `/maintenance/{id}`.
//!
//! While a window covers a service its checks and status go on and its
//! alerts are held (the sender asks [`crate::store::Store::maintenance_until`]).
//! A response shows the window as given plus `active` (open now) and
//! `next_start` (when it next opens, `null` if never).

use super::AppState;
use super::body::read_json;
use super::problem::ApiError;
use crate::domain::time::{Millis, now_ms, serde_rfc3339};
use crate::domain::validate::FieldError;
use crate::domain::window::{self, Schedule, Scope, Window, WindowSpec};
use crate::domain::{Service, ServiceId};
use crate::store::{MAX_WINDOWS, OpenWindows, WindowUpdate};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

/// Page size of `GET /maintenance` when `limit` is not given; also its
/// largest, since no more windows than that may exist.
pub const MAX_LIMIT: i64 = MAX_WINDOWS;

/// Attempts a PATCH or PUT makes before it reports a conflict.
const WRITE_ATTEMPTS: usize = 8;

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/maintenance")
            .route(web::get().to(list))
            .route(web::head().to(list))
            .route(web::post().to(create))
            .default_service(super::other_methods("GET, HEAD, POST, OPTIONS")),
    )
    .service(
        web::resource("/maintenance/{id}")
            .route(web::get().to(get))
            .route(web::head().to(get))
            .route(web::put().to(replace))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(super::other_methods(
                "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
            )),
    );
}

/// A window as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// `"all"` or the list of service ids (empty when only `tag` says).
    #[schema(value_type = Value)]
    pub services: serde_json::Value,
    /// Every service carrying this tag is covered too, `null` if none.
    pub tag: Option<String>,
    /// A one-off window's first instant.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<Millis>,
    /// A one-off window's end (exclusive).
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<Millis>,
    /// A recurring window's pattern.
    pub cron: Option<String>,
    /// A recurring window's length, seconds.
    pub duration_s: Option<i64>,
    /// A recurring window's IANA time zone.
    pub timezone: Option<String>,
    /// Whether it is open now.
    pub active: bool,
    /// When it next opens after now, if ever.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_start: Option<Millis>,
    /// When it was created.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// When it last changed.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

impl WindowView {
    /// The view of `w` at `now`.
    pub fn new(w: Window, now: Millis) -> Self {
        let services = match &w.spec.scope {
            Scope::All => serde_json::json!("all"),
            Scope::Services(ids) => serde_json::json!(ids),
        };
        let active = w.spec.schedule.active_until(now).is_some();
        let next_start = w.spec.schedule.next_start(now);
        let mut view = Self {
            id: w.id,
            name: w.spec.name,
            services,
            tag: w.spec.tag,
            start: None,
            end: None,
            cron: None,
            duration_s: None,
            timezone: None,
            active,
            next_start,
            created_at: w.created_at,
            updated_at: w.updated_at,
        };
        match w.spec.schedule {
            Schedule::Once { start, end } => {
                view.start = Some(start);
                view.end = Some(end);
            }
            Schedule::Recurring(r) => {
                view.cron = Some(r.pattern().to_owned());
                view.duration_s = Some(r.duration_s());
                view.timezone = Some(r.zone().to_owned());
            }
        }
        view
    }
}

fn respond(w: Window) -> WindowView {
    WindowView::new(w, now_ms())
}

/// The `{id}` of `/maintenance/{id}`: only a canonical decimal (no sign,
/// no leading zero, no percent-encoding) names a window, so each has one URL.
struct WindowId(i64);

impl actix_web::FromRequest for WindowId {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            super::path_id::canonical(req).map(WindowId).map_err(|raw| {
                ApiError::NotFound(format!("no maintenance window with id {raw:?}"))
            }),
        )
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("no maintenance window with id {id}"))
}

/// Refuses a spec that adds services that do not exist. Ids the window
/// already lists are not checked again: a service deleted since stays
/// listed (ids are never reused, so it covers nothing), and renaming the
/// window must not fail because of it.
async fn check_services(
    state: &AppState,
    spec: &WindowSpec,
    listed: &[ServiceId],
) -> Result<(), ApiError> {
    let added: Vec<ServiceId> = spec
        .service_ids()
        .iter()
        .copied()
        .filter(|id| !listed.contains(id))
        .collect();
    let unknown = state.store.unknown_services(&added).await?;
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown.iter().map(ServiceId::to_string).collect();
    Err(ApiError::Validation(vec![FieldError::new(
        "services",
        format!("no service with id {}", list.join(", ")),
    )]))
}

/// `POST /maintenance`
#[utoipa::path(post, path = "/maintenance", tag = "alerting", request_body = crate::http::openapi::bodies::WindowInput,
    responses((status = 201, description = "Created", body = WindowView,
        headers(("Location" = String, description = "`/maintenance/{id}`"))),
        (status = 409, description = "The limit of windows is reached")))]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let spec = window::full_spec(&body).map_err(ApiError::Validation)?;
    check_services(&state, &spec, &[]).await?;
    // Checked before the insert, so concurrent creations may overshoot by a
    // few; the bound keeps each alert's look at the windows cheap.
    if state.store.count_windows().await? >= MAX_WINDOWS {
        return Err(ApiError::Conflict(format!(
            "the limit of {MAX_WINDOWS} maintenance windows is reached; delete some first"
        )));
    }
    let w = state.store.create_window(&spec, now_ms()).await?;
    tracing::info!(window_id = w.id, name = %w.spec.name, "maintenance window created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/maintenance/{}", w.id)))
        .json(respond(w)))
}

/// `GET /maintenance?limit=&after=`: windows by id, a page at a time; a full
/// page carries a `Link: <...>; rel="next"` header.
#[utoipa::path(get, path = "/maintenance", tag = "alerting",
    params(("limit" = Option<i64>, Query, minimum = 1), ("after" = Option<i64>, Query, description = "The last id of the previous page")),
    responses((status = 200, description = "Windows by id", body = [WindowView],
        headers(("Link" = String, description = "`<...>; rel=\"next\"` on a full page")))))]
async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (limit, after) = parse_query(req.query_string()).map_err(ApiError::BadQuery)?;
    let windows = state.store.windows_after(after, limit).await?;
    let mut response = HttpResponse::Ok();
    if windows.len() as i64 == limit
        && let Some(last) = windows.last()
    {
        response.insert_header((
            header::LINK,
            format!(
                "</maintenance?limit={limit}&after={}>; rel=\"next\"",
                last.id
            ),
        ));
    }
    let now = now_ms();
    let views: Vec<WindowView> = windows
        .into_iter()
        .map(|w| WindowView::new(w, now))
        .collect();
    Ok(response.json(views))
}

/// Parses `limit` (1.., capped at [`MAX_LIMIT`]) and `after` (an id).
fn parse_query(query: &str) -> Result<(i64, i64), Vec<FieldError>> {
    let mut errors = Vec::new();
    let (mut limit, mut after) = (MAX_LIMIT, 0);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<i64>() {
                Ok(n) if n >= 1 => limit = n.min(MAX_LIMIT),
                _ => errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 (at most {MAX_LIMIT} are returned)"),
                )),
            },
            "after" => match value.parse::<i64>() {
                Ok(n) if n >= 0 => after = n,
                _ => errors.push(FieldError::new("after", "must be a window id")),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((limit, after))
    } else {
        Err(errors)
    }
}

/// `GET /maintenance/{id}`
#[utoipa::path(get, path = "/maintenance/{id}", tag = "alerting", params(("id" = i64, Path)),
    responses((status = 200, description = "The window", body = WindowView)))]
async fn get(WindowId(id): WindowId, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.store.get_window(id).await? {
        Some(w) => Ok(HttpResponse::Ok().json(respond(w))),
        None => Err(not_found(id)),
    }
}

/// `PUT /maintenance/{id}`: replaces every field.
#[utoipa::path(put, path = "/maintenance/{id}", tag = "alerting", params(("id" = i64, Path)), request_body = crate::http::openapi::bodies::WindowInput,
    responses((status = 200, description = "Replaced", body = WindowView),
        (status = 409, description = "It kept changing during the update")))]
async fn replace(
    req: HttpRequest,
    WindowId(id): WindowId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let spec = window::full_spec(&body).map_err(ApiError::Validation)?;
    write(&state, id, |_| Ok(spec.clone())).await
}

/// `PATCH /maintenance/{id}`: a JSON merge patch (RFC 7396) of the fields
/// given; `null` removes one.
#[utoipa::path(patch, path = "/maintenance/{id}", tag = "alerting", params(("id" = i64, Path)),
    request_body(content = crate::http::openapi::bodies::WindowInput, description = "A JSON merge patch"),
    responses((status = 200, description = "Updated", body = WindowView),
        (status = 409, description = "It kept changing during the update")))]
async fn update(
    req: HttpRequest,
    WindowId(id): WindowId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    write(&state, id, |current| {
        window::patch_spec(current, &body).map_err(ApiError::Validation)
    })
    .await
}

/// Read, compute the new spec, then write only if nobody wrote in between,
/// retrying on a race, so two concurrent PATCHes of different fields both
/// take effect. Nothing is written when nothing changes.
async fn write(
    state: &AppState,
    id: i64,
    new_spec: impl Fn(&WindowSpec) -> Result<WindowSpec, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let mut checked: Option<WindowSpec> = None;
    for _ in 0..WRITE_ATTEMPTS {
        let current = state
            .store
            .get_window(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let spec = new_spec(&current.spec)?;
        if spec == current.spec {
            return Ok(HttpResponse::Ok().json(respond(current)));
        }
        if checked.as_ref() != Some(&spec) {
            check_services(state, &spec, current.spec.service_ids()).await?;
            checked = Some(spec.clone());
        }
        match state
            .store
            .update_window(id, &spec, now_ms(), current.updated_at)
            .await?
        {
            WindowUpdate::Saved(w) => {
                tracing::info!(window_id = id, "maintenance window updated");
                return Ok(HttpResponse::Ok().json(respond(w)));
            }
            WindowUpdate::NotFound => return Err(not_found(id)),
            WindowUpdate::Conflict => continue,
        }
    }
    Err(ApiError::Conflict(format!(
        "maintenance window {id} kept changing during the update; try again"
    )))
}

/// `DELETE /maintenance/{id}`
#[utoipa::path(delete, path = "/maintenance/{id}", tag = "alerting", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    WindowId(id): WindowId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.store.delete_window(id).await? {
        return Err(not_found(id));
    }
    tracing::info!(window_id = id, "maintenance window deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `in_maintenance` for service responses: the service's fields and
/// whether an open window covers it now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WithMaintenance<T> {
    /// The service, as it would be shown without this.
    #[serde(flatten)]
    pub service: T,
    /// Whether a maintenance window covers it now.
    pub in_maintenance: bool,
}

/// A service as a read shows it: with `in_maintenance`.
pub async fn shown(state: &AppState, svc: Service) -> Result<WithMaintenance<Service>, ApiError> {
    let open = state.store.open_windows(now_ms()).await?;
    let in_maintenance = open.covers(svc.id);
    Ok(WithMaintenance {
        service: svc,
        in_maintenance,
    })
}

/// A service as a write's answer shows it. The write is done, so a failed
/// look at the windows must not turn it into an error the client would
/// retry (a second registration): it is logged and shown as `false`.
pub async fn shown_after_write(state: &AppState, svc: Service) -> WithMaintenance<Service> {
    let in_maintenance = match state.store.open_windows(now_ms()).await {
        Ok(open) => open.covers(svc.id),
        Err(e) => {
            tracing::warn!(service_id = svc.id.get(), error = %e,
                "cannot read maintenance windows; in_maintenance shown as false");
            false
        }
    };
    WithMaintenance {
        service: svc,
        in_maintenance,
    }
}

/// Adds `in_maintenance` to each of `services`, with one read of the store.
pub async fn annotate<T>(
    state: &AppState,
    services: impl IntoIterator<Item = T>,
    id_of: impl Fn(&T) -> ServiceId,
) -> Result<Vec<WithMaintenance<T>>, ApiError> {
    let open: OpenWindows = state.store.open_windows(now_ms()).await?;
    Ok(services
        .into_iter()
        .map(|service| {
            let in_maintenance = open.covers(id_of(&service));
            WithMaintenance {
                service,
                in_maintenance,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_defaults_caps_and_names_bad_values() {
        assert_eq!(parse_query(""), Ok((MAX_LIMIT, 0)));
        assert_eq!(parse_query("limit=5000&after=7"), Ok((MAX_LIMIT, 7)));
        assert_eq!(parse_query("limit=2"), Ok((2, 0)));
        let errors = parse_query("limit=0&after=x").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "after"]);
    }
}
