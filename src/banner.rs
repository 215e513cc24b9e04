//! The start-up banner: what a person needs to know once the monitor is
//! ready (where it listens, where the data is, which bus, which roles,
//! whether the API is open) in one INFO event.
//!
//! The event's message is a short aligned block for a terminal; every fact
//! is also a structured field, printed on the block's last line, so a log
//! pipeline (or `grep`) reads the same facts without parsing the block.
//! That last line starts `listening addr=` in a process with an HTTP port,
//! as the single line before the banner did, so scripts that waited for it
//! still find it. Secrets never appear: a PostgreSQL or RabbitMQ URL is shown
//! as host, port and database or vhost only.

use crate::cli::Roles;
use crate::config::{DatabaseUrl, Settings};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The command that creates the first key, as the banner suggests it.
pub const CREATE_KEY: &str = "healthmon keys create --name admin --scope write";

/// Where the data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreInfo {
    /// This process opens no store (worker only).
    None,
    /// An SQLite file.
    Sqlite {
        /// The file, made absolute against the working directory.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// The server's host name, address or socket directory.
        host: String,
        /// Its port.
        port: u16,
        /// The database.
        database: String,
    },
}

/// How checks and results travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusInfo {
    /// Channels inside this process.
    InProcess,
    /// A RabbitMQ broker.
    RabbitMq {
        /// The broker's host.
        host: String,
        /// Its port.
        port: u16,
        /// The virtual host.
        vhost: String,
    },
}

/// Who may use the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAccess {
    /// This process serves no API.
    None,
    /// No keys exist; requests to a loopback host name are served without
    /// one.
    OpenLoopback,
    /// No keys exist and `auth.allow_anonymous` serves everyone.
    OpenAnonymous,
    /// Every request needs one of this many keys.
    Keys(usize),
}

impl ApiAccess {
    /// The access as decided at start-up: `keys` is the number of API keys
    /// in the store (ignored without the API).
    pub fn of(settings: &Settings, roles: Roles, keys: usize) -> Self {
        if !roles.api {
            ApiAccess::None
        } else if keys > 0 {
            ApiAccess::Keys(keys)
        } else if settings.auth.allow_anonymous {
            ApiAccess::OpenAnonymous
        } else {
            ApiAccess::OpenLoopback
        }
    }

    /// The field value: `open`, `key required` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiAccess::None => "none",
            ApiAccess::OpenLoopback | ApiAccess::OpenAnonymous => "open",
            ApiAccess::Keys(_) => "key required",
        }
    }
}

/// Everything the banner says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// The build's version.
    pub version: &'static str,
    /// Where the API listens.
    pub api_addr: Option<SocketAddr>,
    /// Where the health probes of a process without the API listen.
    pub probe_addr: Option<SocketAddr>,
    /// The store.
    pub store: StoreInfo,
    /// The bus.
    pub bus: BusInfo,
    /// The roles run.
    pub roles: Roles,
    /// Who may use the API.
    pub api: ApiAccess,
}

impl Banner {
    /// The banner of a process with these settings, roles and bound
    /// addresses.
    pub fn new(
        settings: &Settings,
        roles: Roles,
        api_addr: Option<SocketAddr>,
        probe_addr: Option<SocketAddr>,
        keys: usize,
    ) -> Self {
        let store = if roles.api || roles.scheduler {
            store_info(&settings.database.url)
        } else {
            StoreInfo::None
        };
        Self {
            version: env!("CARGO_PKG_VERSION"),
            api_addr,
            probe_addr,
            store,
            bus: settings
                .queue
                .url
                .as_deref()
                .map_or(BusInfo::InProcess, bus_info),
            roles,
            api: ApiAccess::of(settings, roles, keys),
        }
    }

    /// The API's base URL.
    pub fn url(&self) -> Option<String> {
        self.api_addr.map(|a| format!("http://{a}"))
    }

    /// The block a person reads: one fact a line, labels aligned, ending
    /// with the line the structured fields follow on.
    pub fn text(&self) -> String {
        let mut t = format!("healthmon {} ready", self.version);
        let mut line = |label: &str, value: &str| {
            let _ = write!(t, "\n  {label:<9}{value}");
        };
        match (self.url(), self.probe_addr) {
            (Some(url), _) => line("address", &url),
            (None, Some(probe)) => {
                line("address", "none: no api role in this process");
                line("probes", &format!("http://{probe}/healthz and /readyz"));
            }
            (None, None) => line("address", "none: no api role in this process"),
        }
        line("store", &self.store_text());
        line("bus", &self.bus_text());
        line("roles", &roles_text(self.roles, ", "));
        if let Some(api) = self.api_text() {
            line("API", &api);
        }
        t.push_str("\n  Ctrl-C to stop\n");
        t.push_str(if self.listen_addr().is_some() {
            "listening"
        } else {
            "not listening"
        });
        t
    }

    /// Where this process listens: the API, or the probes without it.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.api_addr.or(self.probe_addr)
    }

    fn store_text(&self) -> String {
        match &self.store {
            StoreInfo::None => "none: workers use no database".to_owned(),
            StoreInfo::Sqlite { path } => format!("SQLite {}", path.display()),
            StoreInfo::Postgres {
                host,
                port,
                database,
            } => format!("PostgreSQL database {database} on {host}:{port}"),
        }
    }

    fn bus_text(&self) -> String {
        match &self.bus {
            BusInfo::InProcess => "in-process".to_owned(),
            BusInfo::RabbitMq { host, port, vhost } => {
                format!("RabbitMQ {host}:{port}, vhost {vhost}")
            }
        }
    }

    fn api_text(&self) -> Option<String> {
        Some(match self.api {
            ApiAccess::None => return None,
            ApiAccess::OpenLoopback => format!(
                "open, no key needed (no API keys; only requests to localhost are served); \
                 to require one: {CREATE_KEY}"
            ),
            ApiAccess::OpenAnonymous => format!(
                "open to anyone who reaches it (auth.allow_anonymous, no API keys); \
                 to require a key: {CREATE_KEY}"
            ),
            ApiAccess::Keys(1) => "needs a key (Authorization: Bearer <token>; 1 key)".to_owned(),
            ApiAccess::Keys(n) => {
                format!("needs a key (Authorization: Bearer <token>; {n} keys)")
            }
        })
    }

    /// Logs the banner: one INFO event, its facts also as fields.
    pub fn log(&self) {
        let (path, pg_host, pg_port, pg_db) = match &self.store {
            StoreInfo::Sqlite { path } => (Some(path.display().to_string()), None, None, None),
            StoreInfo::Postgres {
                host,
                port,
                database,
            } => (
                None,
                Some(host.as_str()),
                Some(*port),
                Some(database.as_str()),
            ),
            StoreInfo::None => (None, None, None, None),
        };
        let (bus_host, bus_port, bus_vhost) = match &self.bus {
            BusInfo::RabbitMq { host, port, vhost } => {
                (Some(host.as_str()), Some(*port), Some(vhost.as_str()))
            }
            BusInfo::InProcess => (None, None, None),
        };
        let keys = match self.api {
            ApiAccess::Keys(n) => Some(n),
            ApiAccess::OpenLoopback | ApiAccess::OpenAnonymous => Some(0),
            ApiAccess::None => None,
        };
        tracing::info!(
            addr = self.listen_addr().map(tracing::field::display),
            url = self.url(),
            probe_addr = self.probe_addr.map(tracing::field::display),
            store = self.store_kind(),
            store_path = path,
            store_host = pg_host,
            store_port = pg_port,
            store_database = pg_db,
            bus = self.bus_kind(),
            bus_host,
            bus_port,
            bus_vhost,
            roles = %roles_text(self.roles, ","),
            api = self.api.as_str(),
            api_keys = keys,
            version = self.version,
            "{}",
            self.text()
        );
    }

    fn store_kind(&self) -> &'static str {
        match self.store {
            StoreInfo::None => "none",
            StoreInfo::Sqlite { .. } => "sqlite",
            StoreInfo::Postgres { .. } => "postgresql",
        }
    }

    fn bus_kind(&self) -> &'static str {
        match self.bus {
            BusInfo::InProcess => "in-process",
            BusInfo::RabbitMq { .. } => "rabbitmq",
        }
    }
}

/// The roles as a list: `api, scheduler, worker`.
fn roles_text(roles: Roles, sep: &str) -> String {
    [
        (roles.api, "api"),
        (roles.scheduler, "scheduler"),
        (roles.worker, "worker"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect::<Vec<_>>()
    .join(sep)
}

/// The store's description, with no password: an SQLite file made absolute,
/// or PostgreSQL's first host, its port and the database (libpq's defaults
/// when the URL leaves them out).
pub fn store_info(url: &DatabaseUrl) -> StoreInfo {
    match url {
        DatabaseUrl::Sqlite(path) => StoreInfo::Sqlite {
            path: std::path::absolute(path).unwrap_or_else(|_| path.clone()),
        },
        DatabaseUrl::Postgres(raw) => match raw.parse::<tokio_postgres::Config>() {
            Ok(c) => StoreInfo::Postgres {
                host: match c.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                    Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
                    None => "localhost".to_owned(),
                },
                port: c.get_ports().first().copied().unwrap_or(5432),
                database: c
                    .get_dbname()
                    .or(c.get_user())
                    .unwrap_or("postgres")
                    .to_owned(),
            },
            // Opening the store would have failed first; say what is known
            // without echoing a string that may hold a password.
            Err(_) => StoreInfo::Postgres {
                host: "?".to_owned(),
                port: 5432,
                database: "?".to_owned(),
            },
        },
    }
}

/// The broker's host, port and vhost from an AMQP URL, with no user or
/// password (amqprs's defaults: port 5672, or 5671 for `amqps`; vhost `/`).
pub fn bus_info(raw: &str) -> BusInfo {
    let Ok(url) = url::Url::parse(raw) else {
        return BusInfo::RabbitMq {
            host: "?".to_owned(),
            port: 5672,
            vhost: "/".to_owned(),
        };
    };
    let default_port = if url.scheme() == "amqps" { 5671 } else { 5672 };
    let path = url.path().trim_start_matches('/');
    let vhost = if path.is_empty() {
        "/".to_owned()
    } else {
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned()
    };
    BusInfo::RabbitMq {
        host: url.host_str().unwrap_or("localhost").to_owned(),
        port: url.port().unwrap_or(default_port),
        vhost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn banner(store: StoreInfo, bus: BusInfo, roles: Roles, api: ApiAccess) -> Banner {
        let addr: SocketAddr = "127.0.0.1:8088".parse().unwrap();
        Banner {
            version: "0.1.0",
            api_addr: roles.api.then_some(addr),
            probe_addr: None,
            store,
            bus,
            roles,
            api,
        }
    }

    #[test]
    fn postgres_shows_host_port_and_database_never_the_password() {
        let info = store_info(&DatabaseUrl::Postgres(
            "postgres://user:s3cret@db.example:6543/health".into(),
        ));
        assert_eq!(
            info,
            StoreInfo::Postgres {
                host: "db.example".into(),
                port: 6543,
                database: "health".into()
            }
        );
        let b = banner(info, BusInfo::InProcess, Roles::all(), ApiAccess::Keys(2));
        assert!(!format!("{b:?}{}", b.text()).contains("s3cret"));
        assert!(
            b.text()
                .contains("PostgreSQL database health on db.example:6543")
        );
        let defaults = store_info(&DatabaseUrl::Postgres("postgres://u:p@h".into()));
        assert_eq!(
            defaults,
            StoreInfo::Postgres {
                host: "h".into(),
                port: 5432,
                database: "u".into()
            }
        );
    }

    #[test]
    fn rabbitmq_shows_host_port_and_vhost_never_the_password() {
        assert_eq!(
            bus_info("amqp://guest:s3cret@mq:5673/%2fprod"),
            BusInfo::RabbitMq {
                host: "mq".into(),
                port: 5673,
                vhost: "/prod".into()
            }
        );
        assert_eq!(
            bus_info("amqps://u:p@mq"),
            BusInfo::RabbitMq {
                host: "mq".into(),
                port: 5671,
                vhost: "/".into()
            }
        );
        assert!(!format!("{:?}", bus_info("amqp://g:s3cret@mq/")).contains("s3cret"));
    }

    #[test]
    fn sqlite_path_is_absolute() {
        let StoreInfo::Sqlite { path } = store_info(&DatabaseUrl::Sqlite("hm.db".into())) else {
            panic!("not sqlite");
        };
        assert!(path.is_absolute());
        assert!(path.ends_with("hm.db"));
    }

    #[test]
    fn the_block_names_every_fact_and_ends_on_the_fields_line() {
        let b = banner(
            StoreInfo::Sqlite {
                path: "/data/hm.db".into(),
            },
            BusInfo::InProcess,
            Roles::all(),
            ApiAccess::OpenLoopback,
        );
        let text = b.text();
        for fact in [
            "healthmon 0.1.0 ready",
            "address  http://127.0.0.1:8088",
            "store    SQLite /data/hm.db",
            "bus      in-process",
            "roles    api, scheduler, worker",
            "open, no key needed",
            CREATE_KEY,
            "Ctrl-C to stop",
        ] {
            assert!(text.contains(fact), "{fact:?} missing from:\n{text}");
        }
        assert!(text.ends_with("\nlistening"), "{text}");
    }

    #[test]
    fn a_worker_says_it_has_no_address() {
        let worker = Roles {
            api: false,
            scheduler: false,
            worker: true,
        };
        let mut b = banner(
            StoreInfo::None,
            bus_info("amqp://g:g@127.0.0.1:5672/%2f"),
            worker,
            ApiAccess::None,
        );
        let text = b.text();
        assert!(text.contains("address  none: no api role"), "{text}");
        assert!(text.contains("RabbitMQ 127.0.0.1:5672, vhost /"), "{text}");
        assert!(!text.contains("API "), "{text}");
        assert!(text.ends_with("\nnot listening"), "{text}");
        b.probe_addr = Some("127.0.0.1:9000".parse().unwrap());
        assert!(b.text().contains("probes   http://127.0.0.1:9000/healthz"));
        assert!(b.text().ends_with("\nlistening"));
        assert_eq!(b.listen_addr(), b.probe_addr);
    }

    #[test]
    fn keys_mean_a_key_is_needed() {
        let b = banner(
            StoreInfo::None,
            BusInfo::InProcess,
            Roles::all(),
            ApiAccess::Keys(1),
        );
        assert!(b.text().contains("API      needs a key"), "{}", b.text());
        assert_eq!(b.api.as_str(), "key required");
    }
}
