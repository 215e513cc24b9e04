//! Configuration: compiled-in defaults, `--config FILE`, `.env`, the
//! environment, then the `--bind`/`--database-url` flags (later wins),
//! checked in full before anything starts; [`Resolved`] remembers which
//! source set each key.
//!
//! Every value is validated here so a bad one stops start-up with one line
//! naming its key, instead of surfacing later from deep inside a task.

mod alerts;
mod sources;

pub use alerts::AlertsSettings;
use serde::Deserialize;
pub use sources::{Entry, EnvVar, Flags, Inputs, Resolved, Source, mask_url, resolve};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A configuration value that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key's value is invalid.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `server.bind`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A source could not be read or parsed.
    #[error("{0}")]
    Source(#[from] config::ConfigError),
    /// The `.env` file could not be parsed.
    #[error(".env: {0}")]
    DotEnv(String),
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Where data is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

/// The validated settings of one process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Store.
    pub database: DatabaseSettings,
    /// Bus.
    pub queue: QueueSettings,
    /// Worker pool.
    pub worker: WorkerSettings,
    /// Which addresses checks may connect to.
    pub checks: ChecksSettings,
    /// Recorder batching.
    pub recorder: RecorderSettings,
    /// WebSocket limits.
    pub ws: WsSettings,
    /// REST API limits.
    pub api: ApiSettings,
    /// Access control.
    pub auth: AuthSettings,
    /// Log retention and hourly rollups.
    pub logs: LogsSettings,
    /// Alert delivery.
    pub alerts: AlertsSettings,
}

/// `[logs]`: how long raw health logs are kept, and how often the
/// maintenance pass (hourly rollups, then deletion of expired logs) runs.
#[derive(Debug, Clone)]
pub struct LogsSettings {
    /// Days a health log is kept; hourly rollups outlive it.
    pub retention_days: u32,
    /// Days an hourly rollup is kept (never less than `retention_days`).
    pub rollup_retention_days: u32,
    /// Seconds between rollups of new logs.
    pub rollup_interval_s: u64,
    /// Seconds between deletions of expired logs.
    pub maintenance_interval_s: u64,
}

/// `[auth]`
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Serve a non-loopback address without any API key.
    pub allow_anonymous: bool,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Listen address.
    pub bind: SocketAddr,
    /// Seconds a request's headers may take to arrive.
    pub client_request_timeout_s: u64,
    /// Idle keep-alive seconds.
    pub keep_alive_s: u64,
    /// Kernel send buffer of each connection: bounds what a client that does
    /// not read (a stalled WebSocket) can hold in kernel memory.
    pub send_buffer_bytes: u32,
}

/// `[database]`
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Which store, and where.
    pub url: DatabaseUrl,
    /// Pool size.
    pub pool_size: usize,
}

/// `[queue]`
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// RabbitMQ URL; `None` means the in-process bus.
    pub url: Option<String>,
    /// Prefix of exchange and queue names.
    pub prefix: String,
    /// Most results waiting on the broker's results queue (ready, not yet
    /// taken by a recorder), e.g. through a database outage. At the bound
    /// the broker refuses more and workers wait and retry, holding their
    /// jobs: checks slow down, nothing is dropped.
    pub results_max: usize,
    /// Which setting chose `url`, for messages (filled in by the binary,
    /// which knows the sources; `None` elsewhere).
    pub url_source: Option<String>,
}

/// `[worker]`
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Checks at once.
    pub concurrency: usize,
    /// Body bytes read per check.
    pub max_body_bytes: usize,
    /// Seconds in-flight checks get at shutdown.
    pub shutdown_grace_s: u64,
    /// The region the workers check from (`--region`, DESIGN.md "Regions
    /// and quorum"); a name as `validate::check_region` allows.
    pub region: String,
}

/// `[checks]`: target safety (see `worker::guard`).
#[derive(Debug, Clone)]
pub struct ChecksSettings {
    /// Also block loopback, RFC 1918, unique-local and CGNAT addresses.
    pub block_private: bool,
    /// Ranges allowed even if they would be blocked.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Send the check's due time in the `x-healthmon-scheduled-at` request
    /// header (for the benchmark's lag measurement; off in production, where
    /// it would only leak an internal detail to every target).
    pub send_schedule_header: bool,
    /// Extra trust roots (PEM) for HTTPS and `tls://` checks and SMTP.
    pub ca_file: Option<std::path::PathBuf>,
}

/// `[recorder]`
#[derive(Debug, Clone)]
pub struct RecorderSettings {
    /// Results per transaction.
    pub batch_size: usize,
    /// Longest wait for a batch, ms.
    pub flush_ms: u64,
}

/// `[ws]`
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Clients at once.
    pub max_clients: usize,
    /// Events a client may lag by.
    pub send_queue: usize,
    /// Seconds between pings.
    pub ping_interval_s: u64,
    /// Browser origins (`scheme://host[:port]`) allowed besides the API's
    /// own; `*` allows any.
    pub allowed_origins: Vec<String>,
}

/// `[api]`
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest logs page.
    pub max_logs_limit: i64,
    /// Most services that may be registered.
    pub max_services: i64,
    /// Sustained writes per second per key (or per IP when anonymous); 0
    /// turns the limit off.
    pub write_rate_per_s: u32,
    /// Writes a caller may make at once before the rate applies.
    pub write_burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: RawServer,
    database: RawDatabase,
    queue: RawQueue,
    worker: RawWorker,
    checks: RawChecks,
    recorder: RawRecorder,
    ws: RawWs,
    api: RawApi,
    auth: RawAuth,
    logs: RawLogs,
    alerts: alerts::RawAlerts,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: String,
    client_request_timeout_s: i64,
    keep_alive_s: i64,
    send_buffer_bytes: i64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    pool_size: i64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    url: String,
    prefix: String,
    results_max: i64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    concurrency: i64,
    max_body_bytes: i64,
    shutdown_grace_s: i64,
    region: String,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    block_private: bool,
    allow_cidrs: String,
    send_schedule_header: bool,
    #[serde(default)]
    ca_file: Option<String>,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecorder {
    batch_size: i64,
    flush_ms: i64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWs {
    max_clients: i64,
    send_queue: i64,
    ping_interval_s: i64,
    allowed_origins: String,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    max_logs_limit: i64,
    max_services: i64,
    write_rate_per_s: i64,
    write_burst: i64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    allow_anonymous: bool,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    retention_days: i64,
    rollup_retention_days: i64,
    rollup_interval_s: i64,
    maintenance_interval_s: i64,
}

/// A snapshot of environment variables: the process's in production, a
/// literal list in tests (so tests never mutate the shared environment).
pub type EnvVars = std::collections::HashMap<String, String>;

/// Loads and validates the settings from the defaults, `config_file` and
/// `env` as the environment (no `.env`, no flags).
pub fn load_with(config_file: Option<&Path>, env: &EnvVars) -> Result<Settings, ConfigError> {
    resolve(&Inputs {
        config_file: config_file.map(Path::to_path_buf),
        env: env.clone(),
        ..Inputs::default()
    })?
    .settings()
}

fn postgres_url_from_parts(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let (host, user, name) = (env("DB_HOST"), env("DB_USER"), env("DB_NAME"));
    if host.is_none() && user.is_none() && name.is_none() {
        return Ok(None);
    }
    let (Some(host), Some(user), Some(name)) = (host, user, name) else {
        return Err(invalid(
            "DB_HOST/DB_USER/DB_NAME",
            "set all three (and DB_PASSWORD, DB_PORT if needed) or none",
        ));
    };
    let port = env("DB_PORT").unwrap_or_else(|| "5432".into());
    if port.parse::<u16>().is_err() {
        return Err(invalid("DB_PORT", format!("{port:?} is not a port number")));
    }
    let mut url =
        url::Url::parse("postgres://localhost/").map_err(|e| invalid("DB_HOST", e.to_string()))?;
    url.set_host(Some(&host))
        .map_err(|e| invalid("DB_HOST", format!("{host:?}: {e}")))?;
    let _ = url.set_port(port.parse().ok());
    let _ = url.set_username(&user);
    if let Some(pw) = env("DB_PASSWORD") {
        let _ = url.set_password(Some(&pw));
    }
    url.set_path(&name);
    Ok(Some(url.to_string()))
}

fn in_range(key: &str, v: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(key, format!("{v} is out of range {min}..={max}")))
    }
}

/// Parses `database.url`.
pub fn parse_database_url(raw: &str) -> Result<DatabaseUrl, ConfigError> {
    let raw = raw.trim();
    if let Some(rest) = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
    {
        if rest.is_empty() || rest.contains(":memory:") {
            return Err(invalid(
                "database.url",
                "sqlite needs a file path, e.g. sqlite://healthmon.db",
            ));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)))
    } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        // Checks the URL and its TLS parameters (sslmode, sslrootcert).
        crate::store::pg_connect::PgTarget::parse(raw).map_err(|e| invalid("database.url", e))?;
        Ok(DatabaseUrl::Postgres(raw.to_owned()))
    } else {
        let scheme = raw.split(':').next().unwrap_or_default();
        Err(invalid(
            "database.url",
            format!("unknown scheme {scheme:?}; use sqlite://PATH or postgres://..."),
        ))
    }
}

/// Parses a comma-separated list of CIDRs (`10.0.0.0/8`, `fd00::/8`) or
/// single addresses (`127.0.0.1`, meaning `/32`; `::1`, meaning `/128`).
/// Host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_cidr_list(key: &str, raw: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let net = if item.contains('/') {
                item.parse::<ipnet::IpNet>().ok()
            } else {
                item.parse::<std::net::IpAddr>()
                    .ok()
                    .map(ipnet::IpNet::from)
            };
            net.map(|n| n.trunc()).ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "{item:?} is not a CIDR like 10.0.0.0/8 or fd00::/8, or an address; \
                         separate entries with commas"
                    ),
                )
            })
        })
        .collect()
}

/// Smallest `queue.results_max`: one full message of results.
const QUEUE_RESULTS_MAX_MIN: i64 = 64;
/// Largest `queue.results_max`.
const QUEUE_RESULTS_MAX_MAX: i64 = 100_000_000;

fn validate(raw: Raw) -> Result<Settings, ConfigError> {
    let bind: SocketAddr = raw.server.bind.trim().parse().map_err(|_| {
        invalid(
            "server.bind",
            format!(
                "{:?} is not an address like 127.0.0.1:8088",
                raw.server.bind
            ),
        )
    })?;
    let queue_url = match raw.queue.url.trim() {
        "" => None,
        u if u.starts_with("amqp://") || u.starts_with("amqps://") => Some(u.to_owned()),
        u => {
            let scheme = u.split(':').next().unwrap_or_default();
            return Err(invalid(
                "queue.url",
                format!("unknown scheme {scheme:?}; use amqp://... or leave empty"),
            ));
        }
    };
    let prefix = raw.queue.prefix.trim().to_owned();
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "queue.prefix",
            "use letters, digits, '-', '_' or '.'",
        ));
    }
    let batch_size = in_range("recorder.batch_size", raw.recorder.batch_size, 1, 10_000)?;
    let send_queue = in_range("ws.send_queue", raw.ws.send_queue, 1, 1 << 20)?;
    // One batch publishes up to two events per result at once; a ring
    // smaller than that would drop every client on every busy batch.
    if send_queue < 2 * batch_size + 64 {
        return Err(invalid(
            "ws.send_queue",
            format!(
                "{send_queue} is too small for recorder.batch_size {batch_size}; \
                 use at least {}",
                2 * batch_size + 64
            ),
        ));
    }
    Ok(Settings {
        server: ServerSettings {
            bind,
            client_request_timeout_s: in_range(
                "server.client_request_timeout_s",
                raw.server.client_request_timeout_s,
                1,
                600,
            )? as u64,
            keep_alive_s: in_range("server.keep_alive_s", raw.server.keep_alive_s, 0, 3600)? as u64,
            send_buffer_bytes: in_range(
                "server.send_buffer_bytes",
                raw.server.send_buffer_bytes,
                4096,
                16 << 20,
            )? as u32,
        },
        database: DatabaseSettings {
            url: parse_database_url(&raw.database.url)?,
            pool_size: in_range("database.pool_size", raw.database.pool_size, 1, 256)? as usize,
        },
        queue: QueueSettings {
            url: queue_url,
            url_source: None,
            prefix,
            // At least one message's worth; at most what a broker can hold
            // (about 300 bytes a result: 100 million is ~30 GB).
            results_max: in_range(
                "queue.results_max",
                raw.queue.results_max,
                QUEUE_RESULTS_MAX_MIN,
                QUEUE_RESULTS_MAX_MAX,
            )? as usize,
        },
        worker: WorkerSettings {
            concurrency: in_range("worker.concurrency", raw.worker.concurrency, 1, 100_000)?
                as usize,
            max_body_bytes: in_range(
                "worker.max_body_bytes",
                raw.worker.max_body_bytes,
                0,
                16 << 20,
            )? as usize,
            shutdown_grace_s: in_range(
                "worker.shutdown_grace_s",
                raw.worker.shutdown_grace_s,
                0,
                60,
            )? as u64,
            region: {
                let region = raw.worker.region.trim().to_owned();
                crate::domain::validate::check_region(&region)
                    .map_err(|m| invalid("worker.region", format!("{region:?}: {m}")))?;
                region
            },
        },
        checks: ChecksSettings {
            block_private: raw.checks.block_private,
            allow_cidrs: parse_cidr_list("checks.allow_cidrs", &raw.checks.allow_cidrs)?,
            send_schedule_header: raw.checks.send_schedule_header,
            // An empty value (an environment variable set to "") means unset.
            ca_file: raw
                .checks
                .ca_file
                .filter(|f| !f.trim().is_empty())
                .map(std::path::PathBuf::from),
        },
        recorder: RecorderSettings {
            batch_size: batch_size as usize,
            flush_ms: in_range("recorder.flush_ms", raw.recorder.flush_ms, 1, 10_000)? as u64,
        },
        ws: WsSettings {
            max_clients: in_range("ws.max_clients", raw.ws.max_clients, 1, 1_000_000)? as usize,
            send_queue: send_queue as usize,
            ping_interval_s: in_range("ws.ping_interval_s", raw.ws.ping_interval_s, 1, 3600)?
                as u64,
            allowed_origins: raw
                .ws
                .allowed_origins
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        },
        api: ApiSettings {
            max_logs_limit: in_range("api.max_logs_limit", raw.api.max_logs_limit, 1, 100_000)?,
            max_services: in_range("api.max_services", raw.api.max_services, 1, 10_000_000)?,
            write_rate_per_s: in_range(
                "api.write_rate_per_s",
                raw.api.write_rate_per_s,
                0,
                1_000_000,
            )? as u32,
            write_burst: in_range("api.write_burst", raw.api.write_burst, 1, 1_000_000)? as u32,
        },
        auth: AuthSettings {
            allow_anonymous: raw.auth.allow_anonymous,
        },
        logs: LogsSettings {
            retention_days: in_range("logs.retention_days", raw.logs.retention_days, 1, 3650)?
                as u32,
            // Rollups must outlive the logs they stand in for: a smaller
            // value is raised to `retention_days`.
            rollup_retention_days: in_range(
                "logs.rollup_retention_days",
                raw.logs.rollup_retention_days,
                1,
                36_500,
            )?
            .max(raw.logs.retention_days) as u32,
            rollup_interval_s: in_range(
                "logs.rollup_interval_s",
                raw.logs.rollup_interval_s,
                1,
                3_600,
            )? as u64,
            maintenance_interval_s: in_range(
                "logs.maintenance_interval_s",
                raw.logs.maintenance_interval_s,
                1,
                86_400,
            )? as u64,
        },
        alerts: raw.alerts.validate()?,
    })
}

#[cfg(test)]
mod tests;
