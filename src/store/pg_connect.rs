//! Connecting to PostgreSQL, over TLS when the URL asks for it.
//!
//! Managed PostgreSQL services mostly refuse connections without TLS, and a
//! monitor's database link crosses networks, so the URL takes libpq's
//! parameters: `sslmode` (`disable`, `prefer`, the default as in libpq,
//! `require`, `verify-full`) and `sslrootcert` (a PEM file of CAs trusted
//! beside the system's). tokio-postgres knows neither `verify-full` nor
//! `sslrootcert`, so both are taken out of the URL here and become a rustls
//! configuration (ring, as everywhere in the binary).

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection uses TLS (libpq's `sslmode`, the values that matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never.
    Disable,
    /// When the server offers it, without verifying its certificate.
    Prefer,
    /// Always, without verifying the certificate (encryption against
    /// eavesdroppers, not against someone in the middle).
    Require,
    /// Always, with the certificate chain verified against the system's
    /// roots and `sslrootcert`, and the host name checked.
    VerifyFull,
}

/// A PostgreSQL URL, split into what tokio-postgres reads and the TLS
/// settings this module applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// The URL without `sslmode` and `sslrootcert`.
    driver_url: String,
    /// The TLS mode.
    pub mode: SslMode,
    /// Extra trusted CAs (PEM).
    pub root_cert: Option<PathBuf>,
}

impl PgTarget {
    /// Splits `url`, or says what is wrong with its TLS parameters.
    pub fn parse(url: &str) -> Result<Self, String> {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("bad PostgreSQL URL: {e}"))?;
        let mut mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "sslmode" => {
                    mode = match &*value {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(format!(
                                "sslmode {other:?} is not supported; use disable, prefer, \
                                 require or verify-full"
                            ));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(&*value)),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if root_cert.is_some() && mode != SslMode::VerifyFull {
            // libpq would verify the chain then; silently not verifying a
            // certificate the operator named would be worse than refusing.
            return Err("sslrootcert needs sslmode=verify-full".into());
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok(PgTarget {
            driver_url: parsed.into(),
            mode,
            root_cert,
        })
    }

    /// Where the URL points, for messages: `PostgreSQL at HOST:PORT
    /// (database NAME)`, with `from ORIGIN` in the parentheses when given
    /// (which setting chose the URL). Never the user or password.
    pub fn describe(&self, origin: Option<&str>) -> String {
        let Ok(config) = self.driver_url.parse::<tokio_postgres::Config>() else {
            return "PostgreSQL".to_owned();
        };
        let ports = config.get_ports();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                // libpq's rule: one port for all hosts, or one per host.
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                        format!("[{name}]:{port}")
                    }
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(dir) => {
                        format!("{}/.s.PGSQL.{port}", dir.display())
                    }
                }
            })
            .collect();
        let mut text = "PostgreSQL".to_owned();
        if !hosts.is_empty() {
            text.push_str(" at ");
            text.push_str(&hosts.join(", "));
        }
        // The server's default database is the user's name.
        let details: Vec<String> = config
            .get_dbname()
            .or(config.get_user())
            .map(|db| format!("database {db}"))
            .into_iter()
            .chain(origin.map(|o| format!("from {o}")))
            .collect();
        if !details.is_empty() {
            text.push_str(&format!(" ({})", details.join(", ")));
        }
        text
    }
}

/// [`PgTarget::describe`] for a URL, or plain `PostgreSQL` if it does not
/// parse.
pub fn describe(url: &str, origin: Option<&str>) -> String {
    PgTarget::parse(url).map_or_else(|_| "PostgreSQL".to_owned(), |t| t.describe(origin))
}

/// Makes connections to one PostgreSQL server; the TLS configuration is
/// built once (the CA file read at start-up, so a bad one stops it).
#[derive(Clone)]
pub struct Connector {
    target: PgTarget,
    tls: Option<MakeRustlsConnect>,
    /// [`PgTarget::describe`], for every connection error.
    description: String,
}

/// The TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The URL's TLS parameters are wrong.
    #[error("{0}")]
    Url(String),
    /// The CA file (`sslrootcert`) or the configuration cannot be used.
    #[error("sslrootcert: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Connector {
    /// A connector for `url`.
    pub fn new(url: &str) -> Result<Self, TlsSetupError> {
        let target = PgTarget::parse(url).map_err(TlsSetupError::Url)?;
        let tls = match target.mode {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => Some(unverified()?),
            SslMode::VerifyFull => Some(crate::tls::verifying_client(target.root_cert.as_deref())?),
        };
        Ok(Connector {
            description: target.describe(None),
            target,
            tls: tls.map(MakeRustlsConnect::new),
        })
    }

    /// `PostgreSQL at HOST:PORT (database NAME)`: what connection errors
    /// start with.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Opens one connection. TCP keepalives are on (first probe after
    /// [`KEEPALIVE_IDLE`]) with a TCP user timeout, so a connection whose
    /// peer vanished (a half-open session) errors within about half a
    /// minute instead of the kernel's two hours.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        // Named by host, port and database, so a person can tell which
        // server refused; the cause as short as it can be said.
        let bad = |e: tokio_postgres::Error| {
            ConnectionError::BadConnection(format!("{}: {}", self.description, cause(&e)))
        };
        let mut config: tokio_postgres::Config = self.target.driver_url.parse().map_err(bad)?;
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(TCP_USER_TIMEOUT);
        match &self.tls {
            None => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
            Some(tls) => {
                config.ssl_mode(match self.target.mode {
                    SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                    _ => tokio_postgres::config::SslMode::Require,
                });
                let (client, conn) = config.connect(tls.clone()).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
        }
    }
}

/// Idle time before the first TCP keepalive probe, both ways.
pub const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
/// Time between unanswered probes.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Unanswered probes before the connection is dropped.
pub const KEEPALIVE_RETRIES: u32 = 3;
/// Longest sent data may stay unacknowledged before the connection is
/// dropped.
pub const TCP_USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks the server to probe this session's connection too (PostgreSQL's
/// `tcp_keepalives_*` and `tcp_user_timeout`, settable per session). A
/// session holding an advisory lock (the scheduler's, the sender's) keeps
/// it until the server notices the session is gone; with the server's
/// defaults (the kernel's, two hours) a lock holder whose host vanished
/// would block every standby that long. Best effort: a server that refuses
/// a setting (an older one without `tcp_user_timeout`) keeps its own.
pub async fn keep_session_alive(conn: &mut AsyncPgConnection) {
    use diesel_async::RunQueryDsl;
    let settings = [
        ("tcp_keepalives_idle", KEEPALIVE_IDLE.as_secs().to_string()),
        (
            "tcp_keepalives_interval",
            KEEPALIVE_INTERVAL.as_secs().to_string(),
        ),
        ("tcp_keepalives_count", KEEPALIVE_RETRIES.to_string()),
        ("tcp_user_timeout", TCP_USER_TIMEOUT.as_millis().to_string()),
    ];
    for (name, value) in settings {
        let set = diesel::sql_query("SELECT set_config($1, $2, false)")
            .bind::<diesel::sql_types::Text, _>(name)
            .bind::<diesel::sql_types::Text, _>(&value)
            .execute(conn)
            .await;
        if let Err(e) = set {
            tracing::debug!(setting = name, error = %e, "the server keeps its own setting");
        }
    }
}

/// Why a connection failed: the server's message, a plain word for the
/// common network failures, else the whole chain (tokio-postgres says
/// "error performing TLS handshake" and keeps the reason, an unknown
/// issuer or a wrong name, in its sources).
fn cause(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let plain = match io.kind() {
                ConnectionRefused => Some("connection refused"),
                TimedOut => Some("timed out"),
                HostUnreachable => Some("host unreachable"),
                NetworkUnreachable => Some("network unreachable"),
                ConnectionReset => Some("connection reset by the server"),
                _ => None,
            };
            if let Some(plain) = plain {
                return plain.to_owned();
            }
        }
        source = s.source();
    }
    with_causes(e)
}

/// An error's text followed by its sources', each once.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Encrypts without judging the certificate (`prefer`, `require`).
fn unverified() -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = crate::tls::provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// Accepts any certificate but still checks the handshake's signatures, as
/// libpq does for `sslmode=require`.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_others_stay() {
        let t = PgTarget::parse(
            "postgres://u:p@db:5432/hm?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.driver_url, "postgres://u:p@db:5432/hm?application_name=x");
        let plain = PgTarget::parse("postgres://db/hm").unwrap();
        assert_eq!(plain.mode, SslMode::Prefer);
        assert_eq!(plain.driver_url, "postgres://db/hm");
        assert_eq!(
            PgTarget::parse("postgres://db/hm?sslmode=require")
                .unwrap()
                .mode,
            SslMode::Require
        );
    }

    #[test]
    fn descriptions_name_host_port_and_database_never_the_password() {
        let d = describe(
            "postgres://u:secret@127.0.0.1:5433/healthmon?sslmode=disable",
            None,
        );
        assert_eq!(d, "PostgreSQL at 127.0.0.1:5433 (database healthmon)");
        let d = describe("postgres://u:secret@db/", Some(".env's DB_HOST"));
        assert_eq!(d, "PostgreSQL at db:5432 (database u, from .env's DB_HOST)");
        assert_eq!(
            describe("postgres://[::1]:6000/x", None),
            "PostgreSQL at [::1]:6000 (database x)"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_server_and_the_cause() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let url = format!("postgres://u:secret@127.0.0.1:{port}/hm?sslmode=disable");
        let err = Connector::new(&url).unwrap().connect().await.err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("PostgreSQL at 127.0.0.1:{port} (database hm): connection refused")
        );
    }

    #[test]
    fn unknown_modes_and_a_ca_without_verification_are_refused() {
        for url in [
            "postgres://db/hm?sslmode=verify-ca",
            "postgres://db/hm?sslmode=allow",
            "postgres://db/hm?sslmode=on",
            "postgres://db/hm?sslmode=require&sslrootcert=/ca.pem",
        ] {
            assert!(PgTarget::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.path().join("missing.pem"), empty] {
            let url = format!(
                "postgres://db/hm?sslmode=verify-full&sslrootcert={}",
                path.display()
            );
            let err = Connector::new(&url).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.starts_with("sslrootcert")),
                "{err:?}"
            );
        }
    }
}
