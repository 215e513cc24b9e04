//! The HTTP edge: REST routes, the WebSocket endpoint and the server itself.
//! Handlers are thin: parse, call the store or bus, map errors once
//! ([`problem::ApiError`]).

pub mod alerts;
pub mod auth;
pub mod body;
pub mod bulk;
pub mod channels;
pub mod dashboard;
pub mod health;
pub mod limit;
pub mod list_query;
pub mod log_budget;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod path_id;
pub mod problem;
pub mod push;
pub mod regions;
pub mod services;
pub mod status_pages;
pub mod status_public;
pub mod uptime;
pub mod windows;
pub mod ws;

use crate::bus::Bus;
use crate::config::{ServerSettings, WsSettings};
use crate::store::Store;
use actix_web::http::{Method, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use problem::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The bus.
    pub bus: Bus,
    /// Largest logs page.
    pub max_logs_limit: i64,
    /// WebSocket limits.
    pub ws: WsSettings,
    /// One permit per WebSocket client allowed.
    pub ws_slots: Arc<Semaphore>,
    /// Cancelled at shutdown; WebSocket sessions watch it.
    pub shutdown: CancellationToken,
    /// The API keys.
    pub keys: Arc<crate::auth::KeyRing>,
    /// Whether the API is open while no key exists.
    pub open_without_keys: bool,
    /// Open only because the bind is loopback: then requests must also name
    /// a loopback host (DNS-rebinding protection).
    pub loopback_only: bool,
    /// Rate limit on writes.
    pub write_limit: Arc<limit::RateLimiter>,
    /// Most services that may be registered.
    pub max_services: i64,
    /// How many are, for that limit.
    pub service_count: Arc<limit::ServiceCount>,
    /// Fresh snapshots for WebSocket clients after lost events, one store
    /// read for all of them.
    pub snapshots: Arc<ws::snapshot::Snapshots>,
    /// Target safety (`[checks]`), for refusing a channel whose settings
    /// name a blocked literal address.
    pub address_policy: Arc<crate::worker::guard::AddressPolicy>,
    /// This process's Prometheus metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// An embedded monitor's (no `queue.url`) one region, `worker.region`:
    /// services may list no other. `None` in a fleet.
    pub embedded_region: Option<String>,
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such path".into()))
}

/// The fallback of a resource: OPTIONS says which methods there are, any
/// other method is a 405 that says the same.
fn other_methods(allow: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        if req.method() == Method::OPTIONS {
            Ok(HttpResponse::NoContent()
                .insert_header((header::ALLOW, allow))
                .finish())
        } else {
            Err(ApiError::MethodNotAllowed(allow))
        }
    })
}

/// Mounts every route. GET routes answer HEAD too (actix drops the body).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/services")
            .route(web::get().to(services::list))
            .route(web::head().to(services::list))
            .route(web::post().to(services::create))
            .default_service(other_methods("GET, HEAD, POST, OPTIONS")),
    )
    // Before `/services/{id}`, which would take `bulk` for an id.
    .configure(bulk::routes)
    .service(
        web::resource("/services/{id}")
            .route(web::get().to(services::get))
            .route(web::head().to(services::get))
            .route(web::put().to(services::replace))
            .route(web::patch().to(services::update))
            .route(web::delete().to(services::delete))
            .default_service(other_methods("GET, HEAD, PUT, PATCH, DELETE, OPTIONS")),
    )
    .service(
        web::resource("/services/{id}/logs")
            .route(web::get().to(logs::list))
            .route(web::head().to(logs::list))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/services/{id}/uptime")
            .route(web::get().to(uptime::get))
            .route(web::head().to(uptime::get))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(health::healthz))
            .route(web::head().to(health::healthz))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(health::readyz))
            .route(web::head().to(health::readyz))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics::get))
            .route(web::head().to(metrics::get))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(openapi::get))
            .route(web::head().to(openapi::get))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/ws")
            .route(web::get().to(ws::connect))
            .default_service(other_methods("GET, OPTIONS")),
    );
    // Each of these resources mounts its own routes.
    channels::routes(cfg);
    alerts::routes(cfg);
    windows::routes(cfg);
    push::routes(cfg);
    status_pages::routes(cfg);
    status_public::routes(cfg);
    regions::routes(cfg);
    dashboard::routes(cfg);
}

/// Longest the kernel keeps a connection whose peer acknowledges nothing, or
/// advertises a zero window, while we have data for it (`TCP_USER_TIMEOUT`).
/// A WebSocket client that stops reading is given up on after
/// [`ws::SEND_TIMEOUT`], but its close frame sits behind the bytes it will
/// not take, and without this the connection, its slot under
/// `ws.max_clients` and its buffers would last as long as it answers the
/// kernel's window probes.
pub const STALLED_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Fixes an accepted connection's kernel send buffer. Linux otherwise grows
/// it up to megabytes for a peer that does not read; fixed, a stalled
/// WebSocket client blocks soon, is noticed and is disconnected, and each
/// connection's kernel memory stays bounded. Also sets
/// [`STALLED_PEER_TIMEOUT`].
fn tune_connection(conn: &dyn std::any::Any, bytes: usize) {
    let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    let socket = socket2::SockRef::from(stream);
    if let Err(e) = socket.set_send_buffer_size(bytes) {
        tracing::debug!(error = %e, "cannot set a connection's send buffer");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = socket.set_tcp_user_timeout(Some(STALLED_PEER_TIMEOUT)) {
        tracing::debug!(error = %e, "cannot set a connection's TCP_USER_TIMEOUT");
    }
}

/// Builds the HTTP server on an already bound listener. The caller runs it
/// and stops it through its handle; signals are ours, not actix's.
pub fn server(
    state: AppState,
    listener: std::net::TcpListener,
    settings: &ServerSettings,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(auth::guard))
            // Registered last, so it runs first: before authentication.
            .wrap(actix_web::middleware::from_fn(limit::header_size))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .on_connect({
        let bytes = settings.send_buffer_bytes as usize;
        move |conn, _| tune_connection(conn, bytes)
    })
    // Events are small frames that must go out at once; with Nagle's
    // algorithm (the OS default) a frame can wait for the client's delayed
    // ACK, tens of milliseconds.
    .tcp_nodelay(true)
    .disable_signals()
    .workers(
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(4),
    )
    .client_request_timeout(Duration::from_secs(settings.client_request_timeout_s))
    .client_disconnect_timeout(Duration::from_secs(2))
    .keep_alive(Duration::from_secs(settings.keep_alive_s))
    .shutdown_timeout(3)
    .listen(listener)?
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_get_a_fixed_send_buffer_and_a_stalled_peer_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let socket = socket2::SockRef::from(&accepted);
        #[cfg(target_os = "linux")]
        assert_eq!(socket.tcp_user_timeout().expect("read"), None);
        tune_connection(&accepted, 16_384);
        // Linux doubles the value for its bookkeeping.
        let buffer = socket.send_buffer_size().expect("read");
        assert!((16_384..=32_768).contains(&buffer), "send buffer {buffer}");
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket.tcp_user_timeout().expect("read"),
            Some(STALLED_PEER_TIMEOUT)
        );
    }
}
