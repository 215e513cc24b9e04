//! Ids in paths. Only a positive integer in canonical decimal (no sign, no
//! leading zero, no percent-encoding) names a resource: the router would
//! turn `%35%37`, and Rust's parser `057` or `+57`, into 57, giving one
//! resource many URLs that caches, proxies' access rules and audit logs
//! would see as different.

use actix_web::HttpRequest;

/// The id in the second segment of the raw path (`/services/{id}...`,
/// before the router's percent-decoding), or the raw segment when it is not
/// a canonical id, for the 404's message.
pub fn canonical(req: &HttpRequest) -> Result<i64, &str> {
    let raw = req.uri().path().split('/').nth(2).unwrap_or_default();
    let canonical =
        !raw.is_empty() && !raw.starts_with('0') && raw.bytes().all(|b| b.is_ascii_digit());
    canonical
        .then(|| raw.parse::<i64>().ok())
        .flatten()
        .ok_or(raw)
}
