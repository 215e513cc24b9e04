//! `GET /healthz` (the process is alive) and `GET /readyz` (it can serve:
//! the store and the bus answer).

use super::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// Liveness: answers as long as the HTTP server runs.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Object)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: 200 when the store and the bus answer, else 503 naming what is
/// down. Either way `regions.missing` names the regions some service lists
/// that have no live worker: their rounds go on without them (a missing
/// vote, not a failing one), so this process is still ready.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()),
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\", \"checks\": {\"store\": \"ok\", \"bus\": \"ok\"}, \"regions\": {\"missing\": []}}`", body = Object),
        (status = 503, description = "Not ready: a problem whose `checks` names what is down")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store =
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: store is down");
    }
    let now = crate::domain::time::now_ms();
    let missing = state.bus.roster().read(now, |s| s.missing(now));
    if !missing.is_empty() {
        tracing::debug!(regions = ?missing, "readiness: listed regions without a live worker");
    }
    readiness(
        &[("store", store.is_ok()), ("bus", state.bus.is_ready())],
        Some(json!({"missing": missing})),
    )
}

/// 200 when every named dependency is up, else a 503 problem naming those
/// that are down; `checks` lists each either way, and `regions` is added
/// when given.
fn readiness(deps: &[(&str, bool)], regions: Option<serde_json::Value>) -> HttpResponse {
    let checks: serde_json::Map<String, serde_json::Value> = deps
        .iter()
        .map(|(name, up)| ((*name).to_owned(), json!(if *up { "ok" } else { "down" })))
        .collect();
    let down: Vec<&str> = deps.iter().filter(|(_, up)| !up).map(|(n, _)| *n).collect();
    let mut body = if down.is_empty() {
        json!({"status": "ready", "checks": checks})
    } else {
        json!({
            "type": "urn:healthmon:problem:not-ready",
            "title": "Not ready",
            "status": 503,
            "detail": format!("unavailable: {}", down.join(", ")),
            "checks": checks,
        })
    };
    if let (Some(regions), Some(fields)) = (regions, body.as_object_mut()) {
        fields.insert("regions".to_owned(), regions);
    }
    if down.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("application/problem+json")
            .json(body)
    }
}

/// A server with only the two probes and `/metrics`, for processes without
/// the API (worker-only processes: orchestrators still need to probe them,
/// and Prometheus to scrape their checks). Open like the probes: it listens
/// only where `--health-bind` says, and tells counts, never a service.
pub fn probe_server(
    bus: crate::bus::Bus,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let bus = web::Data::new(bus);
    let metrics = web::Data::from(metrics);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(bus.clone())
            .app_data(metrics.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(bus_ready))
            .route("/metrics", web::get().to(probe_metrics))
    })
    .disable_signals()
    .workers(1)
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

async fn probe_metrics(metrics: web::Data<crate::metrics::Metrics>) -> HttpResponse {
    super::metrics::encoded(&metrics)
}

async fn bus_ready(bus: web::Data<crate::bus::Bus>) -> HttpResponse {
    readiness(&[("bus", bus.is_ready())], None)
}
