//! The alert outbox as users see it: `GET /alerts`.

use actix_web::web;

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let _ = cfg;
}
