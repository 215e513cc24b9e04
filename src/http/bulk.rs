//! `POST /services/bulk`: registers up to [`MAX_BULK_SERVICES`] services in
//! one request and one transaction (issue 17.5).
//!
//! Each item is the body `POST /services` takes, any kind. The batch is
//! all-or-nothing: every item is validated first, and one problem names
//! every bad field by its item (`[3].url`); only a batch without one is
//! stored, in a single transaction. Then each service is scheduled and
//! announced (`service_created`) as a single registration would be, and the
//! answer lists them in the order given, push services with their
//! `push_url`. The request counts as one write for the rate limit.

use super::AppState;
use super::body::read_json_up_to;
use super::problem::ApiError;
use super::services::{regions_allowed, targets_allowed};
use super::windows::WithMaintenance;
use crate::domain::event::ScheduleUpdate;
use crate::domain::push as push_token;
use crate::domain::time::now_ms;
use crate::domain::validate::{self, FieldError};
use crate::domain::{ChannelId, CheckKind, Event, ServiceSpec};
use crate::store::NewService;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};

/// Most services one bulk request may register.
pub const MAX_BULK_SERVICES: usize = 1000;

/// Largest bulk request body, bytes: 4 KiB a service on average at the
/// most services (a typical service is 100-300 bytes). Only this route
/// gets it; every other body stays within [`super::body::MAX_BODY_BYTES`].
pub const MAX_BULK_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Most field errors one answer lists: a batch of a thousand bad items
/// would otherwise make an answer larger than the request.
const MAX_LISTED_ERRORS: usize = 100;

/// Mounts the route. It must come before `/services/{id}`, which would
/// otherwise take `bulk` for an id.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/services/bulk")
            .route(web::post().to(create))
            .default_service(super::other_methods("POST, OPTIONS")),
    );
}

/// `errors` with each field named by its item: `[3].url`.
fn at(index: usize, errors: Vec<FieldError>) -> impl Iterator<Item = FieldError> {
    errors.into_iter().map(move |e| {
        let field = if e.field.is_empty() {
            format!("[{index}]")
        } else {
            format!("[{index}].{}", e.field)
        };
        FieldError::new(&field, e.message)
    })
}

/// The items of a batch, validated; every problem of every item otherwise.
fn validate_all(state: &AppState, body: &Value) -> Result<Vec<ServiceSpec>, ApiError> {
    let Some(items) = body.as_array() else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "",
            "must be a JSON array of services, each as POST /services takes it",
        )]));
    };
    if items.is_empty() || items.len() > MAX_BULK_SERVICES {
        return Err(ApiError::Validation(vec![FieldError::new(
            "",
            format!(
                "holds {} services; a bulk request registers 1 to {MAX_BULK_SERVICES}",
                items.len()
            ),
        )]));
    }
    let mut specs = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let allowed = |spec: &ServiceSpec| {
            targets_allowed(state, spec).and_then(|()| regions_allowed(state, &spec.regions))
        };
        match validate::full_spec(item).and_then(|spec| match allowed(&spec) {
            Ok(()) => Ok(spec),
            Err(ApiError::Validation(e)) => Err(e),
            Err(other) => Err(vec![FieldError::new("url", other.to_string())]),
        }) {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.extend(at(i, e)),
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        errors.truncate(MAX_LISTED_ERRORS);
        Err(ApiError::Validation(errors))
    }
}

/// Refuses channel ids that name no channel, naming each item that lists
/// one (`[7].channels`), with one look-up for the whole batch.
async fn channels_exist(state: &AppState, specs: &[ServiceSpec]) -> Result<(), ApiError> {
    let wanted: BTreeSet<ChannelId> = specs.iter().flat_map(|s| s.channels.clone()).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let wanted: Vec<ChannelId> = wanted.into_iter().collect();
    let unknown: HashSet<ChannelId> = state
        .store
        .unknown_channels(&wanted)
        .await?
        .into_iter()
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let errors: Vec<FieldError> = specs
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let missing: Vec<String> = spec
                .channels
                .iter()
                .filter(|id| unknown.contains(id))
                .map(ToString::to_string)
                .collect();
            (!missing.is_empty()).then(|| {
                FieldError::new(
                    &format!("[{i}].channels"),
                    format!("no channel with id {}", missing.join(", ")),
                )
            })
        })
        .take(MAX_LISTED_ERRORS)
        .collect();
    Err(ApiError::Validation(errors))
}

/// `POST /services/bulk`
#[utoipa::path(post, path = "/services/bulk", tag = "services",
    // Items as `Object`, not `ServiceInput`: its nesting (the assertions'
    // `equals`, any JSON) inside a list makes schemathesis 4.32's generator
    // fail on Python 3.11 (a recursion error inside hypothesis).
    request_body(content = Vec<Object>,
        description = "1 to 1,000 services (a body of at most 4 MiB), each as `POST /services` takes it (`ServiceInput`); all or none are stored"),
    responses(
        (status = 201, description = "Registered, in the order given; push services with their `push_url`",
            body = [super::push::WithPushUrl<super::windows::WithMaintenance<crate::domain::Service>>]),
        (status = 409, description = "The batch would pass the limit of services (`api.max_services`)")))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_up_to(&req, payload, MAX_BULK_BODY_BYTES).await?;
    let specs = validate_all(&state, &body)?;
    drop(body);
    channels_exist(&state, &specs).await?;
    let count = specs.len() as i64;
    // As for one registration, a guard against runaway scripts: the whole
    // batch must fit.
    if state.service_count.get(&state.store).await? + count > state.max_services {
        return Err(ApiError::Conflict(format!(
            "{count} more services would pass the limit of {} (api.max_services)",
            state.max_services
        )));
    }
    let mut tokens = Vec::with_capacity(specs.len());
    let mut hashes = Vec::with_capacity(specs.len());
    for spec in &specs {
        if CheckKind::of_url(&spec.url) == CheckKind::Push {
            let token = super::push::new_token()?;
            hashes.push(Some(push_token::token_hash(&token)));
            tokens.push(Some(token));
        } else {
            hashes.push(None);
            tokens.push(None);
        }
    }
    let batch: Vec<NewService<'_>> = specs
        .iter()
        .zip(&hashes)
        .map(|(spec, hash)| NewService {
            spec,
            push_token_hash: hash.as_deref(),
        })
        .collect();
    let created = state.store.create_services(&batch, now_ms()).await?;
    state.service_count.add(count).await;
    tracing::info!(
        count,
        first = created.first().map(|s| s.id.get()),
        "services registered in bulk"
    );
    for svc in &created {
        if let Err(e) = state
            .bus
            .publish_schedule(ScheduleUpdate::Upsert {
                id: svc.id,
                spec: Box::new(svc.spec()),
            })
            .await
        {
            // Stored already: the scheduler's reconcile picks them up.
            tracing::warn!(error = %e, "cannot announce new services to the scheduler; it will reconcile");
            break;
        }
    }
    let shown = annotated(&state, created).await;
    let events: Vec<Event> = shown
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .map(|service| Event::ServiceCreated { service })
        .collect();
    if let Err(e) = state.bus.publish_events(&events).await {
        tracing::warn!(error = %e,
            "cannot announce new services to WebSocket clients; they catch up at their next resync");
    }
    let answer: Vec<_> = shown
        .into_iter()
        .zip(tokens)
        .map(|(s, token)| super::push::with_push_url(s, token))
        .collect();
    Ok(HttpResponse::Created().json(answer))
}

/// The services with `in_maintenance`, from one read of the open windows;
/// shown as outside any window if that read fails (they are stored already,
/// so the request must not fail now).
async fn annotated(
    state: &AppState,
    created: Vec<crate::domain::Service>,
) -> Vec<WithMaintenance<crate::domain::Service>> {
    let open = match state.store.open_windows(now_ms()).await {
        Ok(open) => Some(open),
        Err(e) => {
            tracing::warn!(error = %e,
                "cannot read maintenance windows; in_maintenance shown as false");
            None
        }
    };
    created
        .into_iter()
        .map(|service| WithMaintenance {
            in_maintenance: open.as_ref().is_some_and(|o| o.covers(service.id)),
            service,
        })
        .collect()
}
