//! Alert channels: `/channels`, `/channels/{id}` and `POST /channels/{id}/test`.

use actix_web::web;

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let _ = cfg;
}
