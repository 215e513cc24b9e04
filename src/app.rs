//! Building and running the monitor: configuration in, supervised tasks out.
//!
//! [`App::build`] does everything that can fail at start-up (config, store,
//! listener, HTTP client) so a misconfigured process stops before any task
//! runs; [`App::run`] hands the tasks of the chosen roles to the supervisor
//! and returns when they have all stopped.

use crate::alert::deliver::Deliverer;
use crate::alert::mail::{MailError, MailSettings};
use crate::alert::sender::Sender;
use crate::auth::KeyRing;
use crate::banner::Banner;
use crate::bus::{self, Bus};
use crate::cli::Roles;
use crate::config::{DatabaseUrl, Settings};
use crate::http::limit::{RateLimiter, ServiceCount};
use crate::http::ws::snapshot::Snapshots;
use crate::http::{self, AppState};
use crate::maintenance;
use crate::metrics::Metrics;
use crate::recorder::{self, BatchLimits};
use crate::scheduler;
use crate::store::{Store, StoreError};
use crate::supervise::{self, GaveUp, Policy, Stage, Task, TaskError};
use crate::worker::check::{CheckerSettings, ClientError};
use crate::worker::{self, Checker, PoolLimits, guard::AddressPolicy};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Why the monitor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The roles asked for cannot run with this configuration.
    #[error("--role: {0}")]
    Roles(String),
    /// A configured backend is not part of this build.
    #[error("{0}")]
    Unsupported(String),
    /// The bus could not be set up.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("server.bind: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A non-loopback bind with no API key and no explicit opt-out.
    #[error(
        "server.bind: {0} is reachable from other machines and no API key exists; create one \
         with `healthmon keys create --name admin --scope write` (same configuration), or set \
         auth.allow_anonymous = true (HEALTHMON__AUTH__ALLOW_ANONYMOUS=true) to serve it open"
    )]
    NoKey(SocketAddr),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Mail could not be set up (the TLS trust roots).
    #[error(transparent)]
    Mail(#[from] MailError),
    /// A task kept failing.
    #[error(transparent)]
    GaveUp(#[from] GaveUp),
}

/// A monitor ready to run.
pub struct App {
    settings: Settings,
    roles: Roles,
    /// None in worker-only processes: workers never touch the store.
    store: Option<Store>,
    bus: Bus,
    listener: Option<std::net::TcpListener>,
    /// Liveness/readiness for processes without the API (`--health-bind`).
    probe_listener: Option<std::net::TcpListener>,
    checker: Option<Checker>,
    /// The alert sender, in processes that may schedule.
    sender: Option<Sender>,
    /// API keys in the store at start-up (for the banner).
    keys: usize,
    /// This process's Prometheus metrics, moved by its tasks.
    metrics: Arc<Metrics>,
}

impl App {
    /// Validates the roles against the settings, opens the store, builds the
    /// bus and binds the listener.
    pub async fn build(
        settings: Settings,
        roles: Roles,
        health_bind: Option<SocketAddr>,
    ) -> Result<Self, AppError> {
        if !roles.is_all() {
            let pg = matches!(settings.database.url, DatabaseUrl::Postgres(_));
            if settings.queue.url.is_none() || !pg {
                return Err(AppError::Roles(
                    "roles other than `all` need a RabbitMQ queue.url (RABBITMQ_URL) and a \
                     PostgreSQL database.url (DATABASE_URL), shared by every process"
                        .into(),
                ));
            }
        }
        // reqwest is built without a default TLS provider; pick ring once.
        // An error means one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let store = if roles.api || roles.scheduler {
            Some(Store::open(&settings.database.url, settings.database.pool_size).await?)
        } else {
            None
        };
        // Counted once for the banner too: keys created later by another
        // process are honoured at once but not announced.
        let keys = match &store {
            Some(store) if roles.api => store.list_keys().await?.len(),
            _ => 0,
        };
        if roles.api && keys == 0 && !anonymous_allowed(&settings) {
            return Err(AppError::NoKey(settings.server.bind));
        }
        let caps = bus::Capacities {
            jobs: (settings.worker.concurrency * 4).max(1024),
            results: (settings.recorder.batch_size * 8).max(1024),
            events: settings.ws.send_queue,
            schedule: 4096,
        };
        let bus = match &settings.queue.url {
            None => Bus::in_process(caps),
            // Connects once its keeper task runs (see `run`): a broker
            // that is down at start-up is waited for, not fatal.
            Some(url) => {
                let mut opts = bus::rabbitmq::RabbitOptions::new(
                    url.clone(),
                    settings.queue.prefix.clone(),
                    settings.worker.concurrency,
                    settings.recorder.batch_size * 2,
                    caps,
                );
                opts.results_max = settings.queue.results_max;
                opts.url_source = settings.queue.url_source.clone();
                Bus::rabbit(opts)?
            }
        };
        let listener = if roles.api {
            Some(bind(settings.server.bind)?)
        } else {
            None
        };
        let probe_listener = match health_bind {
            Some(addr) if !roles.api => Some(bind(addr)?),
            _ => None,
        };
        let checker = if roles.worker {
            let policy =
                AddressPolicy::new(settings.checks.block_private, &settings.checks.allow_cidrs);
            Some(
                Checker::with_settings(CheckerSettings {
                    max_body_bytes: settings.worker.max_body_bytes,
                    policy,
                    ca_file: settings.checks.ca_file.clone(),
                    schedule_header: settings.checks.send_schedule_header,
                })?
                .in_region(&settings.worker.region),
            )
        } else {
            None
        };
        let sender = match (&store, roles.scheduler) {
            (Some(store), true) => {
                let policy =
                    AddressPolicy::new(settings.checks.block_private, &settings.checks.allow_cidrs);
                let alerts = &settings.alerts;
                let deliverer = Deliverer::new(
                    policy.clone(),
                    alerts.http_timeout,
                    alerts.max_response_bytes,
                )?;
                let mail = MailSettings::new(policy, settings.checks.ca_file.clone())?;
                Some(Sender::new(store.clone(), deliverer, mail, alerts.clone()))
            }
            _ => None,
        };
        Ok(Self {
            settings,
            roles,
            sender,
            store,
            bus,
            listener,
            probe_listener,
            checker,
            keys,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Where the HTTP server listens, if this process serves HTTP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the health probes of a process without the API listen.
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probe_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// What the start-up banner says about this process.
    pub fn banner(&self) -> Banner {
        Banner::new(
            &self.settings,
            self.roles,
            self.local_addr(),
            self.probe_addr(),
            self.keys,
        )
    }

    /// Runs every task of the chosen roles until `stop` resolves, then shuts
    /// down in order (see [`crate::supervise`]).
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<(), AppError> {
        // The listeners are bound (build), so what the banner announces
        // already accepts connections; they wait in the backlog for the
        // server task started below.
        self.banner().log();
        let mut tasks = Vec::new();
        if let Some(keeper) = self.bus.keeper() {
            tasks.push(Task::new("bus", Stage::Transport, move |token| {
                keeper.run(token)
            }));
        }
        if let (Some(listener), Some(store)) = (self.listener, &self.store) {
            tasks.push(http_task(
                listener,
                store.clone(),
                self.bus.clone(),
                &self.settings,
                Arc::clone(&self.metrics),
            ));
        }
        if self.roles.api {
            // Bind this process's event feed now rather than at the first
            // WebSocket client, so that client's snapshot-then-events stream
            // has no gap while a broker queue is being set up.
            drop(self.bus.subscribe_events());
            // Heard from the start, so GET /regions knows the workers at once.
            let _ = self.bus.roster();
        }
        if let Some(listener) = self.probe_listener {
            tasks.push(probe_task(
                listener,
                self.bus.clone(),
                Arc::clone(&self.metrics),
            ));
        }
        if let (true, Some(store)) = (self.roles.scheduler, &self.store) {
            // Rollups and retention: one process of the fleet at a time (its
            // own lock), among those that may schedule.
            let (maintained, logs) = (store.clone(), self.settings.logs.clone());
            let alert_days = self.settings.alerts.retention_days;
            tasks.push(Task::new("log maintenance", Stage::Intake, move |token| {
                maintenance::run(maintained.clone(), logs.clone(), alert_days, token)
            }));
            let (store, bus) = (store.clone(), self.bus.clone());
            let metrics = Arc::clone(&self.metrics);
            tasks.push(Task::new("scheduler", Stage::Intake, move |token| {
                scheduler::run_measured(store.clone(), bus.clone(), Arc::clone(&metrics), token)
            }));
        }
        if let Some(sender) = self
            .sender
            .map(|s| s.with_metrics(Arc::clone(&self.metrics)))
        {
            // One per fleet (its own lock), among the processes that may
            // schedule; a standby takes over when the holder dies.
            tasks.push(Task::new("alert sender", Stage::Intake, move |token| {
                sender.clone().run(token)
            }));
        }
        if let Some(checker) = self.checker {
            let bus = self.bus.clone();
            let limits = PoolLimits {
                concurrency: self.settings.worker.concurrency,
                shutdown_grace: Duration::from_secs(self.settings.worker.shutdown_grace_s),
            };
            let metrics = Arc::clone(&self.metrics);
            tasks.push(Task::new("worker", Stage::Intake, move |token| {
                worker::run(
                    bus.clone(),
                    checker.clone(),
                    limits,
                    Arc::clone(&metrics),
                    token,
                )
            }));
        }
        if let (true, Some(store)) = (self.roles.recorder(), &self.store) {
            let (store, bus) = (store.clone(), self.bus.clone());
            let limits = BatchLimits {
                max_batch: self.settings.recorder.batch_size,
                max_wait: Duration::from_millis(self.settings.recorder.flush_ms),
            };
            tasks.push(Task::new("recorder", Stage::Drain, move |token| {
                recorder::run(store.clone(), bus.clone(), limits, token)
            }));
        }
        let policy = Policy {
            intake_deadline: Duration::from_secs(self.settings.worker.shutdown_grace_s + 2),
            ..Policy::default()
        };
        supervise::run(tasks, policy, stop).await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Whether the API may run with no key: on a loopback address (a laptop),
/// or when the operator opted out explicitly.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, AppError> {
    let l = std::net::TcpListener::bind(addr).map_err(|source| AppError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| AppError::Bind { addr, source })?;
    Ok(l)
}

fn anonymous_allowed(settings: &Settings) -> bool {
    settings.server.bind.ip().is_loopback() || settings.auth.allow_anonymous
}

fn http_task(
    listener: std::net::TcpListener,
    store: Store,
    bus: Bus,
    settings: &Settings,
    metrics: Arc<Metrics>,
) -> Task {
    let server_settings = settings.server.clone();
    let ws = settings.ws.clone();
    let max_logs_limit = settings.api.max_logs_limit;
    let max_services = settings.api.max_services;
    let open_without_keys = anonymous_allowed(settings);
    let loopback_only = !settings.auth.allow_anonymous;
    // Shared across restarts: a restarted server must not admit more
    // clients, forget keys or reset callers' write budgets.
    let ws_slots = Arc::new(Semaphore::new(ws.max_clients));
    let keys = Arc::new(KeyRing::new(store.clone()));
    let write_limit = Arc::new(RateLimiter::new(
        settings.api.write_rate_per_s,
        settings.api.write_burst,
    ));
    let service_count = Arc::new(ServiceCount::default());
    let snapshots = Arc::new(Snapshots::of_store(store.clone()));
    let address_policy = Arc::new(AddressPolicy::new(
        settings.checks.block_private,
        &settings.checks.allow_cidrs,
    ));
    let embedded_region = settings
        .queue
        .url
        .is_none()
        .then(|| settings.worker.region.clone());
    Task::new("http", Stage::Intake, move |token: CancellationToken| {
        let state = AppState {
            store: store.clone(),
            bus: bus.clone(),
            max_logs_limit,
            ws: ws.clone(),
            ws_slots: Arc::clone(&ws_slots),
            shutdown: token.clone(),
            keys: Arc::clone(&keys),
            open_without_keys,
            loopback_only,
            write_limit: Arc::clone(&write_limit),
            max_services,
            service_count: Arc::clone(&service_count),
            snapshots: Arc::clone(&snapshots),
            address_policy: Arc::clone(&address_policy),
            metrics: Arc::clone(&metrics),
            embedded_region: embedded_region.clone(),
        };
        let listener = listener.try_clone();
        let server_settings = server_settings.clone();
        async move { serve_until(http::server(state, listener?, &server_settings)?, token).await }
    })
}

/// Runs an actix server until `token` is cancelled, then stops it
/// gracefully. A server that ends by itself is a task failure.
async fn serve_until(
    server: actix_web::dev::Server,
    token: CancellationToken,
) -> Result<(), TaskError> {
    let handle = server.handle();
    let mut running = tokio::spawn(server);
    tokio::select! {
        ended = &mut running => {
            ended??;
            Err("the HTTP server stopped by itself".into())
        }
        () = token.cancelled() => {
            handle.stop(true).await;
            let _ = running.await;
            Ok(())
        }
    }
}

/// The probe server of a process without the API: `/healthz`, `/readyz`
/// (the bus is connected) and `/metrics` only.
fn probe_task(listener: std::net::TcpListener, bus: Bus, metrics: Arc<Metrics>) -> Task {
    Task::new("probes", Stage::Intake, move |token: CancellationToken| {
        let listener = listener.try_clone();
        let (bus, metrics) = (bus.clone(), Arc::clone(&metrics));
        async move { serve_until(http::health::probe_server(bus, metrics, listener?)?, token).await }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "stop requested"),
        () = term => tracing::info!(signal = "SIGTERM", "stop requested"),
    }
}
