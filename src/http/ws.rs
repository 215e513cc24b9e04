//! `GET /ws`: a snapshot of every service, then every event as it happens.
//!
//! Each client reads from the shared event ring (a tokio broadcast channel of
//! pre-serialised JSON) at its own position; the ring's size is the most a
//! client may fall behind by. A client that falls further behind, or whose
//! socket does not take a message within [`SEND_TIMEOUT`], is disconnected,
//! so a slow reader costs neither memory nor other clients' latency. Pings
//! from the server find dead peers; a client flooding us with messages is
//! cut off too.

use super::AppState;
use super::auth::Caller;
use super::problem::ApiError;
use crate::bus::EventText;
use actix_web::HttpMessage;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Item, Message};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest a message, or a burst of up to [`BURST`] events, may wait for
/// the client's socket.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most events handed to a client's socket per wake-up. Events already
/// waiting go together (one timer, and actix writes them in one go) rather
/// than one select round each: with 1,000 clients at 1,000 events/s that
/// is a million messages a second.
pub const BURST: usize = 64;
/// Largest frame of the snapshot, which goes as one message in frames of
/// this size. actix keeps a connection's write buffer at the largest size it
/// ever held, so a snapshot in one frame (about 250 bytes per service: 25 MB
/// at 100,000) stayed allocated for as long as its client was connected
/// (0.35 MB per client at 1,000 services). In fragments the buffer holds at
/// most actix-ws's 32 queued frames.
pub const SNAPSHOT_FRAME_BYTES: usize = 4096;
/// Most messages a client may send per second before it is disconnected.
pub const MAX_INBOUND_PER_SEC: u32 = 50;
/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 4096;

/// The first message: every service, fields in the REST API's order.
#[derive(serde::Serialize)]
struct Snapshot<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    services: &'a [crate::domain::Service],
}

/// `GET /ws`: upgrades and starts the client's session.
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
    let permit = Arc::clone(&state.ws_slots)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyClients(state.ws.max_clients))?;
    // Subscribe before reading the snapshot so no event falls between them.
    let events = state.bus.subscribe_events();
    let services = state.store.list_services().await?;
    let snapshot = serde_json::to_string(&Snapshot {
        kind: "snapshot",
        services: &services,
    })
    .map_err(crate::bus::BusError::from)?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::BadRequest(format!("expected a WebSocket upgrade: {e}")))?;
    let stream = stream.max_frame_size(MAX_FRAME_BYTES);
    let ping_every = Duration::from_secs(state.ws.ping_interval_s);
    let shutdown = state.shutdown.clone();
    let key = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.0.as_ref().map(|k| k.id))
        .map(|id| (id, Arc::clone(&state.keys)));
    // The session lives on the HTTP worker's runtime; it ends with the
    // connection or at shutdown (it watches the token), never outlives both.
    actix_web::rt::spawn(session_loop(
        session,
        stream,
        events,
        snapshot,
        Limits {
            ping_every,
            key,
            _permit: permit,
        },
        shutdown,
    ));
    Ok(response)
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

async fn send(session: &mut actix_ws::Session, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, session.text(text)).await,
        Ok(Ok(()))
    )
}

/// How handing events to a client went.
enum Forwarded {
    Sent,
    /// Its socket did not take them within [`SEND_TIMEOUT`], or it is gone.
    Stuck,
    /// It fell more than the ring behind.
    Lagged(u64),
    /// The event stream ended (shutdown).
    Closed,
}

/// Sends `first` and the events already waiting after it, up to [`BURST`],
/// under one [`SEND_TIMEOUT`].
async fn forward(
    session: &mut actix_ws::Session,
    events: &mut broadcast::Receiver<EventText>,
    first: EventText,
) -> Forwarded {
    let burst = async {
        if session.text(first).await.is_err() {
            return Forwarded::Stuck;
        }
        for _ in 1..BURST {
            let next = match events.try_recv() {
                Ok(text) => text,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(missed)) => return Forwarded::Lagged(missed),
                Err(TryRecvError::Closed) => return Forwarded::Closed,
            };
            if session.text(next).await.is_err() {
                return Forwarded::Stuck;
            }
        }
        Forwarded::Sent
    };
    tokio::time::timeout(SEND_TIMEOUT, burst)
        .await
        .unwrap_or(Forwarded::Stuck)
}

/// Sends the snapshot as one text message, in frames of at most
/// [`SNAPSHOT_FRAME_BYTES`] (a frame may end inside a UTF-8 character; the
/// message as a whole is valid, which is what WebSocket requires). Each
/// frame gets [`SEND_TIMEOUT`].
async fn send_snapshot(session: &mut actix_ws::Session, snapshot: String) -> bool {
    if snapshot.len() <= SNAPSHOT_FRAME_BYTES {
        return send(session, snapshot).await;
    }
    let whole = Bytes::from(snapshot);
    let mut start = 0;
    while start < whole.len() {
        let end = (start + SNAPSHOT_FRAME_BYTES).min(whole.len());
        let part = whole.slice(start..end);
        let item = if start == 0 {
            Item::FirstText(part)
        } else if end == whole.len() {
            Item::Last(part)
        } else {
            Item::Continue(part)
        };
        let sent = tokio::time::timeout(SEND_TIMEOUT, session.continuation(item)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return false;
        }
        start = end;
    }
    true
}

async fn close(session: actix_ws::Session, code: CloseCode, why: &str) {
    let reason = CloseReason {
        code,
        description: Some(why.to_owned()),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, session.close(Some(reason))).await;
}

/// What a session is held to.
struct Limits {
    ping_every: Duration,
    /// The key the client connected with, rechecked so revoking it closes
    /// the session within [`crate::auth::RELOAD_EVERY`] or so.
    key: Option<(i64, Arc<crate::auth::KeyRing>)>,
    /// The client's slot under `ws.max_clients`, freed when the session ends.
    _permit: OwnedSemaphorePermit,
}

async fn session_loop(
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    mut events: broadcast::Receiver<EventText>,
    snapshot: String,
    limits: Limits,
    shutdown: CancellationToken,
) {
    if !send_snapshot(&mut session, snapshot).await {
        return;
    }
    let ping_every = limits.ping_every;
    let mut recheck = tokio::time::interval(crate::auth::RELOAD_EVERY);
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let mut window_start = Instant::now();
    let mut inbound = 0u32;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                close(session, CloseCode::Away, "server shutting down").await;
                return;
            }
            event = events.recv() => {
                let forwarded = match event {
                    Ok(text) => forward(&mut session, &mut events, text).await,
                    Err(RecvError::Lagged(missed)) => Forwarded::Lagged(missed),
                    Err(RecvError::Closed) => Forwarded::Closed,
                };
                match forwarded {
                    Forwarded::Sent => {}
                    Forwarded::Stuck => {
                        tracing::info!("disconnecting a WebSocket client that does not read");
                        close(session, CloseCode::Policy, "too slow").await;
                        return;
                    }
                    Forwarded::Lagged(missed) => {
                        tracing::info!(missed, "disconnecting a WebSocket client that fell behind");
                        close(session, CloseCode::Policy, "too slow: events were missed").await;
                        return;
                    }
                    Forwarded::Closed => {
                        close(session, CloseCode::Away, "server shutting down").await;
                        return;
                    }
                }
            }
            _ = recheck.tick(), if limits.key.is_some() => {
                if let Some((id, keys)) = &limits.key
                    && !keys.still_valid(*id).await
                {
                    tracing::info!(key_id = id, "closing a WebSocket whose API key was revoked");
                    close(session, CloseCode::Policy, "API key revoked").await;
                    return;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 2 {
                    tracing::info!("disconnecting a silent WebSocket client");
                    close(session, CloseCode::Away, "no pong").await;
                    return;
                }
                if tokio::time::timeout(SEND_TIMEOUT, session.ping(b"")).await.map_or(true, |r| r.is_err()) {
                    return;
                }
            }
            msg = stream.recv() => {
                let Some(Ok(msg)) = msg else { return };
                last_heard = Instant::now();
                if window_start.elapsed() >= Duration::from_secs(1) {
                    window_start = Instant::now();
                    inbound = 0;
                }
                inbound += 1;
                if inbound > MAX_INBOUND_PER_SEC {
                    tracing::info!("disconnecting a WebSocket client that floods");
                    close(session, CloseCode::Policy, "too many messages").await;
                    return;
                }
                match msg {
                    Message::Ping(bytes) if session.pong(&bytes).await.is_err() => return,
                    Message::Close(_) => {
                        close(session, CloseCode::Normal, "bye").await;
                        return;
                    }
                    // Clients have nothing to say; other frames only count as
                    // signs of life.
                    _ => {}
                }
            }
        }
    }
}
