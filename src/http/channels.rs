//! Alert channels: `/channels`, `/channels/{id}` and `POST /channels/{id}/test`.
//!
//! Settings are checked by kind before anything is stored; secrets are
//! write-only (responses show `***`, and `***` sent back keeps the stored
//! value); a literal address that target safety blocks is refused here, as
//! it would be at delivery.

use super::AppState;
use super::body::read_json;
use super::problem::ApiError;
use super::{HttpRequest, other_methods};
use crate::domain::ChannelId;
use crate::domain::channel_spec::{self, ChannelSpec, ChannelView, StoredChannel};
use crate::domain::time::now_ms;
use crate::domain::validate::FieldError;
use crate::store::ChannelSaved;
use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// Most channels that may exist: a guard against runaway scripts (each
/// channel is read by the sender on every alert).
pub const MAX_CHANNELS: i64 = 1000;

/// Page size of `GET /channels` when `limit` is not given; also its cap.
pub const PAGE_LIMIT: i64 = 1000;

/// Attempts a PUT or PATCH makes before it reports a conflict.
const WRITE_ATTEMPTS: usize = 8;

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/channels")
            .route(web::get().to(list))
            .route(web::head().to(list))
            .route(web::post().to(create))
            .default_service(other_methods("GET, HEAD, POST, OPTIONS")),
    )
    .service(
        web::resource("/channels/{id}")
            .route(web::get().to(get))
            .route(web::head().to(get))
            .route(web::put().to(replace))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(other_methods("GET, HEAD, PUT, PATCH, DELETE, OPTIONS")),
    )
    .service(
        web::resource("/channels/{id}/test")
            .route(web::post().to(test))
            .default_service(other_methods("POST, OPTIONS")),
    );
}

/// The `{id}` of `/channels/{id}...`.
pub struct ChannelPath(pub ChannelId);

impl actix_web::FromRequest for ChannelPath {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            super::path_id::canonical(req)
                .map(|id| ChannelPath(ChannelId(id)))
                .map_err(|raw| ApiError::NotFound(format!("no channel with id {raw:?}"))),
        )
    }
}

fn not_found(id: ChannelId) -> ApiError {
    ApiError::NotFound(format!("no channel with id {id}"))
}

fn name_taken(spec: &ChannelSpec) -> ApiError {
    ApiError::Validation(vec![FieldError::new(
        "name",
        format!("another channel is named {:?}", spec.name),
    )])
}

/// Refuses settings that name a literal address target safety blocks
/// (link-local metadata, 0.0.0.0, and private ranges with
/// `checks.block_private`), naming the field.
fn check_targets(state: &AppState, spec: &ChannelSpec) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = spec
        .literal_addresses()
        .into_iter()
        .filter_map(|(field, ip)| {
            state
                .address_policy
                .check(ip)
                .err()
                .map(|blocked| FieldError::new(&field, blocked.to_string()))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn shown(channel: &StoredChannel) -> ChannelView {
    ChannelView::from(channel)
}

/// `POST /channels`
#[utoipa::path(post, path = "/channels", tag = "alerting", request_body = crate::http::openapi::bodies::ChannelInput,
    responses((status = 201, description = "Created; secrets shown as `***`", body = crate::domain::channel_spec::ChannelView,
        headers(("Location" = String, description = "`/channels/{id}`")))))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let spec = channel_spec::full_spec(&body, None).map_err(ApiError::Validation)?;
    check_targets(&state, &spec)?;
    if state.store.count_channels().await? >= MAX_CHANNELS {
        return Err(ApiError::Conflict(format!(
            "the limit of {MAX_CHANNELS} channels is reached"
        )));
    }
    match state.store.create_channel(&spec, now_ms()).await? {
        ChannelSaved::Saved(channel) => {
            tracing::info!(channel_id = channel.id.get(), kind = %channel.spec.kind,
                name = %channel.spec.name, "channel created");
            Ok(HttpResponse::Created()
                .insert_header((header::LOCATION, format!("/channels/{}", channel.id)))
                .json(shown(&channel)))
        }
        ChannelSaved::NameTaken => Err(name_taken(&spec)),
        ChannelSaved::NotFound | ChannelSaved::Conflict => Err(ApiError::Conflict(
            "the channel could not be created; try again".into(),
        )),
    }
}

/// Parses `limit` (1..=[`PAGE_LIMIT`]) and `after` (a channel id).
fn list_query(query: &str) -> Result<(i64, i64), Vec<FieldError>> {
    let (mut limit, mut after, mut errors) = (PAGE_LIMIT, 0, Vec::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<i64>() {
                Ok(n) if n >= 1 => limit = n.min(PAGE_LIMIT),
                _ => errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 (at most {PAGE_LIMIT} are returned)"),
                )),
            },
            "after" => match value.parse::<i64>() {
                Ok(n) if n >= 0 => after = n,
                _ => errors.push(FieldError::new("after", "must be a channel id")),
            },
            other => errors.push(FieldError::new(
                other,
                "unknown parameter; known: limit, after",
            )),
        }
    }
    if errors.is_empty() {
        Ok((limit, after))
    } else {
        Err(errors)
    }
}

/// `GET /channels?limit=&after=`: by id; a full page links to the next.
#[utoipa::path(get, path = "/channels", tag = "alerting",
    params(("limit" = Option<i64>, Query, minimum = 1), ("after" = Option<i64>, Query, description = "The last id of the previous page")),
    responses((status = 200, description = "Channels by id", body = [crate::domain::channel_spec::ChannelView],
        headers(("Link" = String, description = "`<...>; rel=\"next\"` on a full page")))))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (limit, after) = list_query(req.query_string()).map_err(ApiError::BadQuery)?;
    let channels = state.store.list_channels(after, limit).await?;
    let mut response = HttpResponse::Ok();
    if channels.len() as i64 == limit
        && let Some(last) = channels.last()
    {
        response.insert_header((
            header::LINK,
            format!("</channels?limit={limit}&after={}>; rel=\"next\"", last.id),
        ));
    }
    Ok(response.json(channels.iter().map(shown).collect::<Vec<_>>()))
}

/// `GET /channels/{id}`
#[utoipa::path(get, path = "/channels/{id}", tag = "alerting", params(("id" = i64, Path)),
    responses((status = 200, description = "The channel", body = crate::domain::channel_spec::ChannelView)))]
pub async fn get(
    ChannelPath(id): ChannelPath,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match state.store.get_channel(id).await? {
        Some(channel) => Ok(HttpResponse::Ok().json(shown(&channel))),
        None => Err(not_found(id)),
    }
}

/// `PUT /channels/{id}`: replaces every field (`all_services` and
/// `remind_every_s` fall back to their defaults when left out).
#[utoipa::path(put, path = "/channels/{id}", tag = "alerting", params(("id" = i64, Path)), request_body = crate::http::openapi::bodies::ChannelInput,
    responses((status = 200, description = "Replaced", body = crate::domain::channel_spec::ChannelView),
        (status = 409, description = "It kept changing during the update")))]
pub async fn replace(
    req: HttpRequest,
    ChannelPath(id): ChannelPath,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    write(&state, id, |current| {
        channel_spec::full_spec(&body, Some(current))
    })
    .await
}

/// `PATCH /channels/{id}`: changes the fields given; `config` is merged
/// setting by setting (`null` removes one).
#[utoipa::path(patch, path = "/channels/{id}", tag = "alerting", params(("id" = i64, Path)),
    request_body(content = crate::http::openapi::bodies::ChannelInput, description = "Any of the fields; `config` merges"),
    responses((status = 200, description = "Updated", body = crate::domain::channel_spec::ChannelView),
        (status = 409, description = "It kept changing during the update")))]
pub async fn update(
    req: HttpRequest,
    ChannelPath(id): ChannelPath,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    write(&state, id, |current| {
        channel_spec::patch_spec(current, &body)
    })
    .await
}

/// Read, build the new spec from the current one, write it only if nobody
/// wrote in between (retrying if somebody did), so neither a secret kept
/// from the stored value nor a concurrent change is lost.
async fn write(
    state: &AppState,
    id: ChannelId,
    build: impl Fn(&ChannelSpec) -> Result<ChannelSpec, Vec<FieldError>>,
) -> Result<HttpResponse, ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let current = state
            .store
            .get_channel(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let spec = build(&current.spec).map_err(ApiError::Validation)?;
        if spec == current.spec {
            // Nothing changes, so nothing is written (updated_at stays).
            return Ok(HttpResponse::Ok().json(shown(&current)));
        }
        check_targets(state, &spec)?;
        match state
            .store
            .update_channel(id, &spec, current.updated_at, now_ms())
            .await?
        {
            ChannelSaved::Saved(channel) => {
                tracing::info!(channel_id = id.get(), kind = %channel.spec.kind,
                    name = %channel.spec.name, "channel updated");
                return Ok(HttpResponse::Ok().json(shown(&channel)));
            }
            ChannelSaved::NameTaken => return Err(name_taken(&spec)),
            ChannelSaved::NotFound => return Err(not_found(id)),
            ChannelSaved::Conflict => continue,
        }
    }
    Err(ApiError::Conflict(format!(
        "channel {id} kept changing during the update; try again"
    )))
}

/// `DELETE /channels/{id}`: its undelivered alerts fail ("channel
/// deleted") and services stop listing it.
#[utoipa::path(delete, path = "/channels/{id}", tag = "alerting", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    ChannelPath(id): ChannelPath,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.store.delete_channel(id, now_ms()).await? {
        return Err(not_found(id));
    }
    tracing::info!(channel_id = id.get(), "channel deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /channels/{id}/test`: writes a `test` alert to the outbox and
/// answers 202 with it as `GET /alerts/{id}` shows it; the sender delivers
/// it like any other, so its state there says whether the channel works.
#[utoipa::path(post, path = "/channels/{id}/test", tag = "alerting", params(("id" = i64, Path)),
    responses((status = 202, description = "A `test` alert is queued", body = crate::domain::alert_view::AlertView)))]
pub async fn test(
    ChannelPath(id): ChannelPath,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match state.store.create_test_alert(id, now_ms()).await? {
        Some(alert) => {
            tracing::info!(
                channel_id = id.get(),
                alert_id = alert.id,
                "test alert queued"
            );
            Ok(HttpResponse::Accepted()
                .insert_header((header::LOCATION, format!("/alerts/{}", alert.id)))
                .json(alert))
        }
        None => Err(not_found(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_bounded_and_named() {
        assert_eq!(list_query(""), Ok((PAGE_LIMIT, 0)));
        assert_eq!(list_query("limit=5000&after=7"), Ok((PAGE_LIMIT, 7)));
        let fields = |q: &str| -> Vec<String> {
            list_query(q)
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields("limit=0&after=x&kind=slack"),
            ["limit", "after", "kind"]
        );
    }
}
