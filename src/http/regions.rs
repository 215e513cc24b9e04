//! `GET /regions` (DESIGN.md "Regions and quorum"): each region the fleet
//! knows (listed by a service, or with a worker), its workers with when
//! each was last heard from and how fast it checks, and whether it is live
//! (a listed region without a live worker counts as missing in its rounds)
//! and impaired (its votes set aside). From this process's heartbeat view
//! ([`crate::bus::Roster`]), so it needs no database read.

use super::AppState;
use crate::domain::time::now_ms;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// Mounts `/regions`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/regions")
            .route(web::get().to(list))
            .route(web::head().to(list))
            .default_service(super::other_methods("GET, HEAD, OPTIONS")),
    );
}

/// The regions, by name, and the listed ones without a live worker.
#[utoipa::path(get, path = "/regions", tag = "regions",
    responses((status = 200, description = "`{\"regions\": [{\"name\", \"listed\", \"live\", \"impaired\", \"impaired_since\", \"checks_per_second\", \"workers\": [{\"id\", \"last_seen\", \"live\", \"checks_per_second\"}]}], \"missing\": [\"name\"]}`", body = Object)))]
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let now = now_ms();
    let (regions, missing) = state
        .bus
        .roster()
        .read(now, |s| (s.view(now), s.missing(now)));
    HttpResponse::Ok().json(json!({"regions": regions, "missing": missing}))
}
