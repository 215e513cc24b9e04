//! `GET /metrics`: this process's series in the Prometheus text format
//! (see [`crate::metrics`]). Read scope when keys exist, like every other
//! read route (the auth guard in front of it decides).

use super::AppState;
use super::problem::ApiError;
use crate::metrics::{CONTENT_TYPE, Metrics};
use crate::store::StoreError;
use actix_web::{HttpResponse, web};
use std::time::Duration;

/// Longest a scrape waits for the store's count; Prometheus's own scrape
/// timeout is 10 s by default.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// The handler.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub async fn get(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // One grouped COUNT per scrape. A store that does not answer fails the
    // scrape (Prometheus shows `up 0`) rather than serving stale numbers as
    // if they were fresh.
    let counts = tokio::time::timeout(STORE_WAIT, state.store.count_services_by_status())
        .await
        .map_err(|_| StoreError::Pool(format!("no answer within {} s", STORE_WAIT.as_secs())))??;
    state.metrics.set_services(&counts);
    // Never fails the scrape: a broker that does not answer leaves the
    // queue series out (see crate::metrics::FRESH_FOR and ASK_WITHIN).
    state.metrics.read_queues(&state.bus).await;
    // Each client holds one slot while connected: the slots in use are the
    // clients, with no hook in the WebSocket code.
    let free = state.ws_slots.available_permits();
    state
        .metrics
        .set_ws_clients(state.ws.max_clients.saturating_sub(free));
    Ok(encoded(&state.metrics))
}

/// The text of `metrics`, as a response.
pub fn encoded(metrics: &Metrics) -> HttpResponse {
    match metrics.encode() {
        Ok(text) => HttpResponse::Ok().content_type(CONTENT_TYPE).body(text),
        // Writing into a String cannot fail; a metric's own encoder could.
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}
