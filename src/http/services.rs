//! `/services` and `/services/{id}`: register, list, read, replace, update,
//! delete. Every change is written to the store first, then announced to the
//! scheduler and, as a `service_created`, `service_updated` or
//! `service_deleted` event, to every WebSocket client of every API process.

use super::AppState;
use super::body::read_json;
use super::problem::ApiError;
use super::push::WithPushUrl;
use super::windows::{self, WithMaintenance};
use crate::domain::Event;
use crate::domain::Service;
use crate::domain::event::ScheduleUpdate;
use crate::domain::time::now_ms;
use crate::domain::validate;
use crate::domain::{ChannelId, ServiceId};
use crate::store::Updated;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

/// The `{id}` of `/services/{id}...` as the client sent it. Only a
/// canonical decimal names a service: the router would turn `%35%37`, and
/// Rust's parser `057` or `+57`, into 57, giving one service many URLs that
/// caches, proxies' access rules and audit logs would see as different.
pub struct PathId(pub ServiceId);

impl actix_web::FromRequest for PathId {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            super::path_id::canonical(req)
                .map(|id| PathId(ServiceId(id)))
                .map_err(|raw| ApiError::NotFound(format!("no service with id {raw:?}"))),
        )
    }
}

fn not_found(id: ServiceId) -> ApiError {
    ApiError::NotFound(format!("no service with id {id}"))
}

/// `POST /services`
#[utoipa::path(post, path = "/services", tag = "services",
    request_body = crate::http::openapi::bodies::ServiceInput,
    responses(
        (status = 201, description = "Registered; a push service's answer carries its `push_url` (shown once)",
            body = WithPushUrl<WithMaintenance<Service>>, headers(("Location" = String, description = "`/services/{id}`"))),
        (status = 409, description = "The limit of services (`api.max_services`) is reached")))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let spec = validate::full_spec(&body).map_err(ApiError::Validation)?;
    targets_allowed(&state, &spec)?;
    regions_allowed(&state, &spec.regions)?;
    channels_exist(&state, &spec.channels, &[]).await?;
    // Checked before the insert, so concurrent registrations may overshoot
    // the limit by a few; it guards against runaway scripts, not races.
    if state.service_count.get(&state.store).await? >= state.max_services {
        return Err(ApiError::Conflict(format!(
            "the limit of {} services is reached (api.max_services)",
            state.max_services
        )));
    }
    let (svc, token) = super::push::register(&state, &spec, now_ms()).await?;
    state.service_count.add(1).await;
    tracing::info!(service_id = svc.id.get(), name = %svc.name, "service registered");
    tell_scheduler(
        &state,
        ScheduleUpdate::Upsert {
            id: svc.id,
            spec: Box::new(svc.spec()),
        },
    )
    .await;
    let location = format!("/services/{}", svc.id);
    let shown = windows::shown_after_write(&state, svc).await;
    tell_clients(
        &state,
        shown.service.id,
        |service| Event::ServiceCreated { service },
        &shown,
    )
    .await;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(super::push::with_push_url(shown, token)))
}

/// Refuses a `tcp://`, `tls://` or `dns://` URL whose literal address
/// (a dns resolver's included) target safety blocks: 422 naming `url`.
/// Names are judged when resolved, at check time, like http(s) URLs.
pub(super) fn targets_allowed(
    state: &AppState,
    spec: &crate::domain::ServiceSpec,
) -> Result<(), ApiError> {
    match validate::literal_target(&spec.url).map(|ip| state.address_policy.check(ip)) {
        Some(Err(blocked)) => Err(ApiError::Validation(vec![validate::FieldError::new(
            "url",
            blocked.to_string(),
        )])),
        _ => Ok(()),
    }
}

/// Refuses, in an embedded monitor, regions other than its own: it has no
/// workers anywhere else (422 naming `regions`, saying a fleet is needed).
pub(super) fn regions_allowed(state: &AppState, regions: &[String]) -> Result<(), ApiError> {
    let Some(own) = &state.embedded_region else {
        return Ok(());
    };
    match validate::embedded_regions_error(regions, own) {
        Some(message) => Err(ApiError::Validation(vec![validate::FieldError::new(
            "regions", message,
        )])),
        None => Ok(()),
    }
}

/// Refuses channel ids that name no channel (422 naming `channels`), but
/// for those in `kept`: a channel deleted after a service listed it is
/// ignored when alerting, and must not block an unrelated PATCH.
async fn channels_exist(
    state: &AppState,
    ids: &[ChannelId],
    kept: &[ChannelId],
) -> Result<(), ApiError> {
    let new: Vec<ChannelId> = ids
        .iter()
        .copied()
        .filter(|id| !kept.contains(id))
        .collect();
    let unknown = state.store.unknown_channels(&new).await?;
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown.iter().map(ToString::to_string).collect();
    Err(ApiError::Validation(vec![validate::FieldError::new(
        "channels",
        format!("no channel with id {}", list.join(", ")),
    )]))
}

/// Announces a committed change to the scheduler. The change is already in
/// the store, so a bus failure must not turn it into an error the client
/// would retry: the scheduler catches up by its periodic reconcile (and at
/// once after its own reconnect).
async fn tell_scheduler(state: &AppState, update: ScheduleUpdate) {
    if let Err(e) = state.bus.publish_schedule(update).await {
        tracing::warn!(error = %e, "cannot announce a change to the scheduler; it will reconcile");
    }
}

/// Announces a committed change to every WebSocket client. As with the
/// scheduler, a bus failure must not fail the request: a client that
/// misses the event is brought up to date by the resync (a fresh snapshot)
/// its API process sends after it lost events. `shown` is what the REST
/// API answers, so secrets are already `***`; the push URL is never in it.
async fn tell_clients<T: serde::Serialize>(
    state: &AppState,
    id: ServiceId,
    event: impl FnOnce(serde_json::Value) -> Event,
    shown: &T,
) {
    match serde_json::to_value(shown) {
        Ok(service) => publish(state, id, &event(service)).await,
        Err(e) => {
            tracing::warn!(service_id = id.get(), error = %e, "cannot encode a service for WebSocket clients");
        }
    }
}

async fn publish(state: &AppState, id: ServiceId, event: &Event) {
    if let Err(e) = state.bus.publish_event(event).await {
        tracing::warn!(service_id = id.get(), error = %e,
            "cannot announce a service change to WebSocket clients; they catch up at their next resync");
    }
}

/// `GET /services?limit=&after=&status=&tag=&q=`: a page of services in
/// id order, filtered in the database ([`super::list_query`]); a full page
/// carries `Link: <...>; rel="next"` with the same filters.
#[utoipa::path(get, path = "/services", tag = "services",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 10000, description = "Page size (default 1000)"),
        ("after" = Option<i64>, Query, description = "The last id of the previous page"),
        ("status" = Option<String>, Query, description = "Comma list of statuses (any case); may repeat"),
        ("tag" = Option<String>, Query, description = "Only services with this tag"),
        ("q" = Option<String>, Query, description = "Name contains (any case)")),
    responses((status = 200, description = "A page of services in id order", body = [WithMaintenance<Service>],
        headers(("Link" = String, description = "`<...>; rel=\"next\"` on a full page")))))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let filter = super::list_query::parse(req.query_string()).map_err(ApiError::BadQuery)?;
    let open = state.store.open_windows(now_ms()).await?;
    let limit = usize::try_from(filter.limit).unwrap_or(0);
    let page = state
        .store
        .with_services_page(&filter, move |services| page_json(services, &open, limit))
        .await?;
    let page = match page {
        Ok(page) => page,
        // What `HttpResponse::json` answers when a body does not encode.
        Err(e) => {
            return Ok(HttpResponse::from_error(
                actix_web::error::JsonPayloadError::Serialize(e),
            ));
        }
    };
    let mut response = HttpResponse::Ok();
    if page.count == limit
        && let Some(last) = page.last
    {
        response.insert_header((
            header::LINK,
            super::list_query::next_link(&filter, last.get()),
        ));
    }
    Ok(response
        .insert_header(header::ContentType::json())
        .body(web::Bytes::from_owner(KeptBuffer(page.json))))
}

/// Page buffers kept for the next pages, at most [`KEPT_BUFFERS`] of at
/// most [`KEPT_BUFFER_BYTES`] each (16 MiB in all).
///
/// A page of 1,000 is about 450 KB, a block the allocator serves from
/// memory of its own; freed (by the thread that sent it, not the one that
/// wrote it) it went back to the system, and the next page faulted fresh
/// memory in: the kernel zeroing those pages (`clear_page_erms` under
/// transparent huge pages) was 12 % of the CPU of `GET /services` with
/// ten clients paging at once.
static KEPT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// Most buffers kept.
const KEPT_BUFFERS: usize = 16;
/// Largest buffer kept: a page of 1,000 fits; a page of 10,000 is let go.
const KEPT_BUFFER_BYTES: usize = 1 << 20;

/// An empty buffer of at least `capacity` bytes, a kept one if any.
fn page_buffer(capacity: usize) -> Vec<u8> {
    let kept = KEPT.lock().ok().and_then(|mut kept| kept.pop());
    let mut buffer = kept.unwrap_or_default();
    buffer.clear();
    buffer.reserve(capacity);
    buffer
}

/// A page's bytes as the response body owns them: kept for the next page
/// when the body is dropped (sent, or the client went away).
struct KeptBuffer(Vec<u8>);

impl AsRef<[u8]> for KeptBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for KeptBuffer {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        if buffer.capacity() <= KEPT_BUFFER_BYTES
            && let Ok(mut kept) = KEPT.lock()
            && kept.len() < KEPT_BUFFERS
        {
            kept.push(buffer);
        }
    }
}

/// A page of `GET /services` written out.
struct PageJson {
    /// The JSON array, as `HttpResponse::json` of the services each
    /// wrapped in [`WithMaintenance`] would write it.
    json: Vec<u8>,
    /// Services in it.
    count: usize,
    /// The last one's id.
    last: Option<ServiceId>,
}

/// Bytes a listed service takes in JSON, about (a plain HTTP service is
/// 400-500): the buffer starts at a page's size instead of doubling its
/// way there, copying the page each time.
const SERVICE_JSON_BYTES: usize = 512;

/// Writes `services` as the JSON array of the page, each with its
/// `in_maintenance`, as they come from the store, with no vector of
/// services or JSON values in between.
fn page_json(
    services: &mut dyn Iterator<Item = Service>,
    open: &crate::store::OpenWindows,
    limit: usize,
) -> Result<PageJson, serde_json::Error> {
    let mut json = page_buffer(2 + limit.min(10_000) * SERVICE_JSON_BYTES);
    json.push(b'[');
    let (mut count, mut last) = (0, None);
    for service in services {
        if count > 0 {
            json.push(b',');
        }
        // The service's own object with `in_maintenance` put in before its
        // closing brace: the bytes `#[serde(flatten)]` in WithMaintenance
        // writes, without serde's flattening machinery around each field.
        serde_json::to_writer(&mut json, &service)?;
        if json.last() == Some(&b'}') {
            json.pop();
            json.extend_from_slice(if open.covers(service.id) {
                b",\"in_maintenance\":true}"
            } else {
                b",\"in_maintenance\":false}"
            });
        }
        count += 1;
        last = Some(service.id);
    }
    json.push(b']');
    Ok(PageJson { json, count, last })
}

/// `GET /services/{id}`
#[utoipa::path(get, path = "/services/{id}", tag = "services", params(("id" = i64, Path)),
    responses((status = 200, description = "The service", body = WithMaintenance<Service>)))]
pub async fn get(PathId(id): PathId, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.store.get_service(id).await? {
        Some(svc) => Ok(HttpResponse::Ok().json(windows::shown(&state, svc).await?)),
        None => Err(not_found(id)),
    }
}

/// `PUT /services/{id}`: replaces every settable field.
#[utoipa::path(put, path = "/services/{id}", tag = "services", params(("id" = i64, Path)),
    request_body = crate::http::openapi::bodies::ServiceInput,
    responses((status = 200, description = "Replaced; `push_url` when it became a push service", body = WithPushUrl<WithMaintenance<Service>>)))]
pub async fn replace(
    req: HttpRequest,
    PathId(id): PathId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    // The current settings hold the header values a `***` keeps; an
    // unknown id still answers 422 for a bad body and 404 for a good one.
    let current = state.store.get_service(id).await?;
    let spec = match &current {
        Some(current) => validate::replace_spec(&current.spec(), &body),
        None => validate::full_spec(&body),
    }
    .map_err(ApiError::Validation)?;
    targets_allowed(&state, &spec)?;
    regions_allowed(&state, &spec.regions)?;
    channels_exist(&state, &spec.channels, &[]).await?;
    save(&state, id, spec, current.map(|c| c.url)).await
}

/// Attempts a PATCH makes before it reports a conflict.
const PATCH_ATTEMPTS: usize = 8;

/// `PATCH /services/{id}`: changes the fields given.
///
/// Read, merge, then write only if nobody wrote in between (a
/// compare-and-set on the row's version), retrying on a race, so two
/// concurrent PATCHes of different fields both take effect.
#[utoipa::path(patch, path = "/services/{id}", tag = "services", params(("id" = i64, Path)),
    request_body(content = crate::http::openapi::bodies::ServiceInput, description = "Any of the fields"),
    responses(
        (status = 200, description = "Updated; `push_url` when it became a push service", body = WithPushUrl<WithMaintenance<Service>>),
        (status = 409, description = "It kept changing during the update")))]
pub async fn update(
    req: HttpRequest,
    PathId(id): PathId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    for _ in 0..PATCH_ATTEMPTS {
        let current = state
            .store
            .get_service(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let spec = validate::patch_spec(&current.spec(), &body).map_err(ApiError::Validation)?;
        if spec.url != current.url {
            targets_allowed(&state, &spec)?;
        }
        // Only a change is judged: a service a fleet registered stays
        // editable by a monitor later run embedded on the same store.
        if spec.regions != current.regions {
            regions_allowed(&state, &spec.regions)?;
        }
        channels_exist(&state, &spec.channels, &current.channels).await?;
        if spec == current.spec() {
            // Nothing changes, so nothing is written (updated_at stays).
            return Ok(HttpResponse::Ok().json(windows::shown(&state, current).await?));
        }
        match state
            .store
            .update_service(id, &spec, now_ms(), Some(current.version))
            .await?
        {
            Updated::Saved(svc) => return announce(&state, *svc, Some(&current.url)).await,
            Updated::NotFound => return Err(not_found(id)),
            Updated::Conflict => continue,
        }
    }
    Err(ApiError::Conflict(format!(
        "service {id} kept changing during the update; try again"
    )))
}

async fn save(
    state: &AppState,
    id: ServiceId,
    spec: crate::domain::ServiceSpec,
    before_url: Option<String>,
) -> Result<HttpResponse, ApiError> {
    match state
        .store
        .update_service(id, &spec, now_ms(), None)
        .await?
    {
        Updated::Saved(svc) => announce(state, *svc, before_url.as_deref()).await,
        Updated::NotFound | Updated::Conflict => Err(not_found(id)),
    }
}

/// Tells the scheduler about a saved change and answers with the service
/// (and its push URL, if this change made it a push service; `before_url`
/// is its URL before the change).
async fn announce(
    state: &AppState,
    svc: crate::domain::Service,
    before_url: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    tracing::info!(service_id = svc.id.get(), "service updated");
    let (svc, token) = super::push::token_if_new_push(state, svc, before_url).await?;
    tell_scheduler(
        state,
        ScheduleUpdate::Upsert {
            id: svc.id,
            spec: Box::new(svc.spec()),
        },
    )
    .await;
    let shown = windows::shown_after_write(state, svc).await;
    tell_clients(
        state,
        shown.service.id,
        |service| Event::ServiceUpdated { service },
        &shown,
    )
    .await;
    Ok(HttpResponse::Ok().json(super::push::with_push_url(shown, token)))
}

/// `DELETE /services/{id}`: the service, its logs and transitions go.
#[utoipa::path(delete, path = "/services/{id}", tag = "services", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    PathId(id): PathId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.store.delete_service(id).await? {
        return Err(not_found(id));
    }
    state.service_count.add(-1).await;
    tracing::info!(service_id = id.get(), "service deleted");
    tell_scheduler(&state, ScheduleUpdate::Remove { id }).await;
    publish(&state, id, &Event::ServiceDeleted { service_id: id }).await;
    Ok(HttpResponse::NoContent().finish())
}
