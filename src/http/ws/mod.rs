//! `GET /ws`: a snapshot of every service, then every event as it happens.
//!
//! Each client reads from the shared event ring (a tokio broadcast channel of
//! pre-serialised JSON) at its own position; the ring's size is the most a
//! client may fall behind by. A client that falls further behind, or whose
//! socket does not take a message within [`SEND_TIMEOUT`], is disconnected,
//! so a slow reader costs neither memory nor other clients' latency. Pings
//! from the server find dead peers; a client flooding us with messages is
//! cut off too. Events reach the socket through the response body ([`feed`]);
//! the session task spawned here watches the rest.

pub mod feed;
pub mod filter;
mod inbound;
pub mod snapshot;

use super::AppState;
use super::auth::Caller;
use super::problem::ApiError;
use actix_http::ws::{CloseCode, OpCode};
use actix_web::HttpMessage;
use actix_web::body::{BodyStream, MessageBody};
use actix_web::{HttpRequest, HttpResponse, web};
use feed::{Control, Feed, Link};
use inbound::{Frame, Inbound};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest a client's socket may take nothing while the server holds bytes
/// for it beyond its kernel send buffer and actix's write buffer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a session checks its client is still taking what it is sent.
const STALL_CHECK: Duration = Duration::from_secs(1);
/// Largest frame of a snapshot message (a page of up to
/// [`snapshot::PAGE_SERVICES`] services), which goes in frames of this
/// size. actix keeps a connection's write buffer at the largest size it
/// ever held, so a snapshot in one frame stayed allocated, at its full size,
/// for as long as its client was connected (BENCHMARKS.md has what that cost
/// with 1,000 clients). In fragments the buffer holds at
/// most actix's write buffer (32 KiB) and a [`feed::CHUNK_BYTES`] chunk.
pub const SNAPSHOT_FRAME_BYTES: usize = 4096;
/// Most messages a client may send per second before it is disconnected.
pub const MAX_INBOUND_PER_SEC: u32 = 50;
/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 4096;

/// `GET /ws`: upgrades and starts the client's session.
#[utoipa::path(get, path = "/ws", tag = "meta",
    description = "The live feed: a WebSocket upgrade. The server sends the `snapshot` messages, \
        then one message per event (`check`, `status_change`, `service_created`, `service_updated`, \
        `service_deleted`, `resync`). The key may also come as `access_token`.",
    params(
        ("service_id" = Option<String>, Query, description = "Comma list of service ids"),
        ("tag" = Option<String>, Query, description = "Only services with this tag"),
        ("events" = Option<String>, Query, description = "Comma list of event types"),
        ("access_token" = Option<String>, Query, description = "The API key, for browsers")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket handshake, or a bad filter"),
        (status = 403, description = "A cross-origin page (see ws.allowed_origins)"),
        (status = 503, description = "Too many WebSocket clients (ws.max_clients)")))]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !origin_allowed(&req, &state.ws.allowed_origins) {
        return Err(ApiError::Forbidden(
            "cross-origin WebSocket connections are refused; list the page's origin in \
             ws.allowed_origins"
                .into(),
        ));
    }
    let mut filter = filter::Filter::parse(req.query_string()).map_err(ApiError::BadQuery)?;
    let permit = Arc::clone(&state.ws_slots)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyClients(state.ws.max_clients))?;
    // Subscribe before reading the snapshot so no event falls between them;
    // the read is one that starts after this, shared with the clients
    // connecting meanwhile.
    let events = state.bus.subscribe_events();
    let listing = state
        .snapshots
        .fresh()
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot read the snapshot: {e}")))?;
    let snapshot = if filter.limits_services() {
        let shown: Vec<&crate::domain::Service> = listing
            .services
            .iter()
            .filter(|s| filter.shows(s))
            .collect();
        snapshot::pages_of(&shown, &listing.open).map_err(crate::bus::BusError::from)?
    } else {
        listing.pages.to_vec()
    };
    drop(listing);
    let mut response = actix_http::ws::handshake(req.head())
        .map_err(|e| ApiError::BadRequest(format!("expected a WebSocket upgrade: {e}")))?;
    let (feed, link) = Feed::new(snapshot, events, permit, Arc::clone(&state.snapshots));
    let feed = feed.with_filter(filter);
    let response = response
        .message_body(BodyStream::new(feed).boxed())
        .map_err(|e| ApiError::BadRequest(format!("expected a WebSocket upgrade: {e}")))?;
    let inbound = Inbound::new(body, MAX_FRAME_BYTES);
    let ping_every = Duration::from_secs(state.ws.ping_interval_s);
    let shutdown = state.shutdown.clone();
    let key = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.0.as_ref().map(|k| k.id))
        .map(|id| (id, Arc::clone(&state.keys)));
    // The session lives on the HTTP worker's runtime; it ends with the
    // connection (the feed cancels `link.gone` when dropped) or at shutdown.
    actix_web::rt::spawn(session_loop(
        link,
        inbound,
        Limits { ping_every, key },
        shutdown,
    ));
    Ok(response.into())
}

/// Browsers send `Origin` on WebSocket handshakes and do not apply CORS to
/// them, so without this check any web page a user opens could read the
/// feed from a monitor on their machine. Non-browser clients send no
/// `Origin` and are let through.
fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || *a == origin) {
        return true;
    }
    let Ok(parsed) = url::Url::parse(&origin) else {
        return false;
    };
    let authority = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return false,
    };
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    authority == host
}

/// At most 10 protocol errors are logged a second: any client can make them.
static PROTOCOL_ERRORS: crate::http::log_budget::LogBudget =
    crate::http::log_budget::LogBudget::new(10);

/// Asks the feed to send a close frame and end. Should its control queue
/// be full the client is not reading; the feed ends anyway once the session
/// is gone, as the link's sender is dropped with it.
fn close(link: Link, code: CloseCode, why: &str) {
    let _ = link
        .control
        .try_send(Control::Close(feed::close_frame(code, why)));
}

/// What a session is held to.
struct Limits {
    ping_every: Duration,
    /// The key the client connected with, rechecked so revoking it closes
    /// the session within [`crate::auth::RELOAD_EVERY`] or so.
    key: Option<(i64, Arc<crate::auth::KeyRing>)>,
}

/// Watches one client: what it sends, whether it still reads, whether its
/// key still stands, and shutdown. Events go from the ring to the client
/// through the feed, not through here.
async fn session_loop(
    link: Link,
    mut inbound: Inbound,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let ping_every = limits.ping_every;
    let mut recheck = tokio::time::interval(crate::auth::RELOAD_EVERY);
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut stall_check = tokio::time::interval_at(Instant::now() + STALL_CHECK, STALL_CHECK);
    let mut last_heard = Instant::now();
    let mut window_start = Instant::now();
    let mut inbound_count = 0u32;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                close(link, CloseCode::Away, "server shutting down");
                return;
            }
            () = link.gone.cancelled() => return,
            _ = stall_check.tick() => {
                if link.stalled_for() > SEND_TIMEOUT {
                    tracing::info!("disconnecting a WebSocket client that does not read");
                    close(link, CloseCode::Policy, "too slow");
                    return;
                }
            }
            _ = recheck.tick(), if limits.key.is_some() => {
                if let Some((id, keys)) = &limits.key
                    && !keys.still_valid(*id).await
                {
                    tracing::info!(key_id = id, "closing a WebSocket whose API key was revoked");
                    close(link, CloseCode::Policy, "API key revoked");
                    return;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 2 {
                    tracing::info!("disconnecting a silent WebSocket client");
                    close(link, CloseCode::Away, "no pong");
                    return;
                }
                let ping = Control::Frame(feed::control_frame(OpCode::Ping, b""));
                if link.control.try_send(ping).is_err() {
                    tracing::info!("disconnecting a WebSocket client that does not read");
                    return;
                }
            }
            frame = inbound.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        if let Some(suppressed) = PROTOCOL_ERRORS.take() {
                            tracing::info!(error = %e, suppressed, "disconnecting a WebSocket client that broke the protocol");
                        }
                        close(link, e.close_code(), &e.to_string());
                        return;
                    }
                    None => return,
                };
                last_heard = Instant::now();
                if window_start.elapsed() >= Duration::from_secs(1) {
                    window_start = Instant::now();
                    inbound_count = 0;
                }
                inbound_count += 1;
                if inbound_count > MAX_INBOUND_PER_SEC {
                    tracing::info!("disconnecting a WebSocket client that floods");
                    close(link, CloseCode::Policy, "too many messages");
                    return;
                }
                match frame {
                    Frame::Ping(payload) => {
                        let pong = Control::Frame(feed::control_frame(OpCode::Pong, &payload));
                        if link.control.try_send(pong).is_err() {
                            return;
                        }
                    }
                    Frame::Close => {
                        close(link, CloseCode::Normal, "bye");
                        return;
                    }
                    // Other frames only count as signs of life.
                    Frame::Other => {}
                }
            }
        }
    }
}
