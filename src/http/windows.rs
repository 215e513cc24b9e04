//! Maintenance windows: `/maintenance`, `/maintenance/{id}`.

use actix_web::web;

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let _ = cfg;
}
