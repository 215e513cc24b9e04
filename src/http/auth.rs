//! Authentication and write limits, in front of every route.
//!
//! `/healthz` and `/readyz` are always open (orchestrators probe them), and
//! so are `/push/{token}` (a job's ping: the token is its credential, limited
//! per token by `push`) and `/status/...` (public status pages and badges,
//! which show only the services a page lists), and so are `/` and `/ui/...`
//! (the dashboard's fixed files: the page asks for a key and sends it itself).
//! Everything else needs `Authorization: Bearer <token>` once any key
//! exists; `/ws` also takes `?access_token=` because browsers cannot set
//! headers on a WebSocket. A `read` key may only read. With no key at all,
//! the API is open if the server may run anonymously (a loopback bind, or
//! `auth.allow_anonymous`). Writes are then rate-limited per key, or per
//! client IP while open; but while open on a loopback bind, loopback
//! callers are not limited (the laptop's owner).

use super::AppState;
use super::problem::ApiError;
use crate::auth::{Key, Scope, Verdict};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use std::time::Instant;

/// The key a request was made with, for handlers that need it (`/ws`).
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Key>);

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn bearer(req: &ServiceRequest) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if req.path() == "/ws" {
        return url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned());
    }
    None
}

/// Whether the request names a loopback host (`localhost`, `127.x`, `::1`).
/// A request line in absolute form (`GET http://name/ HTTP/1.1`) names its
/// host there, and that wins over the `Host` header (RFC 9112, 3.2.2).
fn host_is_loopback(req: &ServiceRequest) -> bool {
    let target = req.uri().authority().map(|a| a.host());
    let Some(host) = target.or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    }) else {
        // HTTP/1.0 without Host: only local tools send that.
        return true;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Pings carry their own secret (the push token) and their own limit.
    // Status pages are public by design: they show only what a page lists.
    if matches!(req.path(), "/healthz" | "/readyz" | "/")
        || req.path().starts_with("/push/")
        || req.path().starts_with("/status/")
        || req.path().starts_with("/ui/")
    {
        return next.call(req).await;
    }
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .nth(1)
        .is_some()
    {
        // Proxies and servers disagree on which of two headers counts: a
        // proxy that vets the first while the API reads the other is a
        // bypass, so neither is trusted.
        return Err(
            ApiError::BadRequest("send one Authorization header, not several".into()).into(),
        );
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    let token = bearer(&req);
    let caller = match state
        .keys
        .verdict(token.as_deref())
        .await
        .map_err(ApiError::from)?
    {
        Verdict::NoKeys if state.open_without_keys => {
            if state.loopback_only && !host_is_loopback(&req) {
                // A page on some web site whose name was re-pointed at
                // 127.0.0.1 (DNS rebinding) reaches a keyless laptop monitor
                // with its own name in Host: refuse it.
                return Err(ApiError::Forbidden(
                    "without API keys this server answers only requests to a loopback host \
                     name (localhost, 127.0.0.1, [::1])"
                        .into(),
                )
                .into());
            }
            None
        }
        Verdict::NoKeys | Verdict::Unknown => {
            return Err(ApiError::Unauthorized(if token.is_some() {
                "the token is not a valid API key".into()
            } else {
                "an API key is required: send Authorization: Bearer <token>".into()
            })
            .into());
        }
        Verdict::Key(key) => Some(key),
    };
    let write = !is_read(req.method());
    if write {
        if let Some(key) = &caller
            && key.scope == Scope::Read
        {
            return Err(ApiError::Forbidden(format!(
                "key {:?} has the read scope; changes need a write key",
                key.name
            ))
            .into());
        }
        let peer = req.peer_addr().map(|a| a.ip());
        let who = match &caller {
            Some(key) => Some(format!("key:{}", key.id)),
            // The limit keeps one client from crowding out the others on a
            // shared server. Open on a loopback bind, the server is a
            // laptop's and its loopback caller is its owner: a bulk import
            // from a script must not trip over it (issue 17.5).
            None if state.loopback_only && peer.is_some_and(|ip| ip.is_loopback()) => None,
            None => Some(format!(
                "ip:{}",
                peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
            )),
        };
        if let Some(who) = who
            && let Err(wait) = state.write_limit.take(&who, Instant::now())
        {
            return Err(ApiError::TooManyRequests(wait.as_secs().max(1)).into());
        }
    }
    if let Some(key) = &caller {
        state.keys.touch(key).await;
    }
    req.extensions_mut().insert(Caller(caller));
    next.call(req).await
}
