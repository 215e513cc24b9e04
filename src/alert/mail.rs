//! Email alerts: a rendered [`Mail`] sent to an `email` channel's SMTP
//! server (DESIGN.md, "Alerting").
//!
//! The connection follows the channel's `tls` setting: `starttls` (the
//! default, port 587) upgrades a plain connection and refuses to go on when
//! the server does not offer STARTTLS; `implicit` (port 465) speaks TLS from
//! the first byte; `none` sends in the clear and is only ever used when the
//! channel asks for it (a local relay, tests). The login (PLAIN or LOGIN)
//! happens after the upgrade.
//!
//! Trust is the system's roots (which honour `SSL_CERT_FILE`) plus the PEM
//! file given to [`MailSettings::new`]: the sender passes `checks.ca_file`
//! there (DESIGN.md; `None` until that setting exists), so an internal
//! relay's CA is trusted the same way as an internal HTTPS target's. The
//! certificate must match the channel's `host`.
//!
//! The SMTP host is a target like any check's: its name is resolved here,
//! every address is put to the [`AddressPolicy`] of `[checks]`, and the
//! connection goes to an address that passed, so neither a DNS answer nor a
//! literal can reach a blocked range. TLS still names the host itself (SNI
//! and the certificate check).
//!
//! Every step is bounded: connecting (per address, and the name lookup) by
//! [`MailSettings::connect_timeout`], the whole conversation by
//! [`MailSettings::send_timeout`]; server replies are bounded in size by
//! lettre. Error texts start with a reason code like a check's (`dns:`,
//! `blocked:`, `connect:`, `timeout:`, `tls:`, `auth:`, `smtp:`) and never
//! carry the password, even if the server echoes it.

use super::channel::{ChannelConfig, MailTls};
use super::deliver::Outcome;
use super::render::Mail;
use crate::tls::TlsError;
use crate::worker::guard::{AddressPolicy, Blocked};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
    TlsParametersBuilder,
};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long connecting may take (the name lookup, and each address tried).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one whole send may take, from the lookup to the server's
/// acceptance of the message.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the goodbye (QUIT) may take once a message is accepted. It
/// runs outside the send's timeout: the message is delivered by then, and
/// a server that hangs on QUIT must not turn that into a retry and a
/// second mail.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// What every mail delivery shares: target safety, trust and time limits.
/// Made once by the sender and kept (the trust roots are read here, once).
#[derive(Clone)]
pub struct MailSettings {
    policy: AddressPolicy,
    ca_file: Option<PathBuf>,
    /// The system's roots, then the CA file's.
    roots: Arc<Vec<CertificateDer<'static>>>,
    /// For implicit TLS, which healthmon sets up itself.
    client: Arc<rustls::ClientConfig>,
    /// Limit on the name lookup and on each connection attempt.
    pub connect_timeout: Duration,
    /// Limit on the whole send.
    pub send_timeout: Duration,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("policy", &self.policy)
            .field("ca_file", &self.ca_file)
            .field("roots", &self.roots.len())
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout)
            .finish()
    }
}

impl MailSettings {
    /// Settings with `[checks]`'s address policy and CA file (PEM, added to
    /// the system's roots), and the default time limits.
    pub fn new(policy: AddressPolicy, ca_file: Option<PathBuf>) -> Result<Self, MailError> {
        let (system, extra) = crate::tls::trust_roots(ca_file.as_deref())?;
        let client = crate::tls::verifying_client(ca_file.as_deref())?;
        let mut roots = system;
        roots.extend(extra);
        Ok(MailSettings {
            policy,
            ca_file,
            roots: Arc::new(roots),
            client: Arc::new(client),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        })
    }

    /// The same settings with other time limits.
    pub fn with_timeouts(mut self, connect: Duration, send: Duration) -> Self {
        self.connect_timeout = connect;
        self.send_timeout = send;
        self
    }

    /// Lettre's TLS parameters for STARTTLS to `host`, on the same roots.
    fn starttls_parameters(&self, host: &str) -> Result<TlsParameters, MailError> {
        let mut builder =
            TlsParametersBuilder::new(host.to_owned()).certificate_store(CertificateStore::None);
        for root in self.roots.iter() {
            // A system root lettre cannot take is skipped, as rustls skips
            // it in `verifying_client`; the CA file's were checked there.
            if let Ok(cert) = Certificate::from_der(root.to_vec()) {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build_rustls()
            .map_err(|e| MailError::Tls(e.to_string()))
    }
}

/// A mail could not be delivered. The text is what `GET /alerts` shows as
/// the alert's `last_error`: a reason code, a colon, what happened.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `send` was given a channel that is not an `email` one.
    #[error("config: not an email channel")]
    NotEmail,
    /// The sender, a recipient or the message itself cannot be used.
    #[error("message: {0}")]
    Message(String),
    /// The CA file cannot be used.
    #[error("tls: {0}")]
    Trust(#[from] TlsError),
    /// The SMTP host's name does not resolve.
    #[error("dns: {host}: {why}")]
    Dns {
        /// The channel's host.
        host: String,
        /// What the resolver said.
        why: String,
    },
    /// Every address of the SMTP host is blocked by `[checks]`.
    #[error("blocked: {0}")]
    Blocked(Blocked),
    /// No connection could be made.
    #[error("connect: {host}:{port}: {why}")]
    Connect {
        /// The channel's host.
        host: String,
        /// The channel's port.
        port: u16,
        /// What went wrong with the last address tried.
        why: String,
    },
    /// A step took longer than it may.
    #[error("timeout: {what} took longer than {} ms", .after.as_millis())]
    Timeout {
        /// Which step: "connecting", "the name lookup" or "the whole send".
        what: &'static str,
        /// Its limit.
        after: Duration,
    },
    /// TLS failed: the handshake, the certificate, or no STARTTLS offered.
    #[error("tls: {0}")]
    Tls(String),
    /// The server refused the login (or offers none that healthmon speaks).
    #[error("auth: {text}")]
    Auth {
        /// What the server said, password removed.
        text: String,
        /// A 5xx reply: trying again will not help.
        permanent: bool,
    },
    /// The server refused the mail or broke off the conversation.
    #[error("smtp: {text}")]
    Smtp {
        /// What the server said, password removed.
        text: String,
        /// A 5xx reply: trying again will not help.
        permanent: bool,
    },
}

impl MailError {
    /// Whether another attempt cannot succeed without someone changing the
    /// channel or the server (a 5xx reply, a bad address, a blocked host).
    /// The sender may still retry: a relay's policy can change.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::NotEmail | MailError::Message(_) | MailError::Blocked(_) => true,
            MailError::Auth { permanent, .. } | MailError::Smtp { permanent, .. } => *permanent,
            _ => false,
        }
    }
}

/// What the sender makes of a send's result: a permanent failure (a 5xx
/// reply, a bad address, a blocked host) is not retried; anything else
/// (timeouts, refused connections, 4xx replies, TLS trouble that a server
/// fix may end) is, with the usual backoff.
pub fn outcome(result: Result<(), MailError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Sent,
        Err(e) if e.is_permanent() => Outcome::Fail {
            error: e.to_string(),
        },
        Err(e) => Outcome::Retry {
            error: e.to_string(),
            after: None,
        },
    }
}

/// Sends `mail` through the SMTP server of `config` (an `email` channel),
/// to all its recipients at once. `Ok` means the server accepted the
/// message for delivery.
pub async fn send(
    config: &ChannelConfig,
    mail: &Mail,
    settings: &MailSettings,
) -> Result<(), MailError> {
    let ChannelConfig::Email {
        host,
        port,
        tls,
        username,
        password,
        from,
        to,
    } = config
    else {
        return Err(MailError::NotEmail);
    };
    // Built before any connection: a bad address costs nothing.
    let message = message(from, to, mail)?;
    let login = match (username, password) {
        (Some(user), Some(password)) => Some((user.as_str(), password.expose())),
        _ => None,
    };
    let server = Server {
        host,
        port: *port,
        tls: *tls,
    };
    let conversation = deliver(&server, login, &message, settings);
    let result = match tokio::time::timeout(settings.send_timeout, conversation).await {
        Ok(Ok(mut conn)) => {
            // Accepted: the goodbye can only fail politely.
            let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.quit()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(MailError::Timeout {
            what: "the whole send",
            after: settings.send_timeout,
        }),
    };
    match &result {
        Ok(()) => tracing::debug!(
            host = %host, port, tls = ?tls, recipients = to.len(), "alert mail accepted"
        ),
        Err(e) => tracing::debug!(host = %host, port, tls = ?tls, error = %e, "alert mail failed"),
    }
    result
}

/// Where to send.
struct Server<'a> {
    host: &'a str,
    port: u16,
    tls: MailTls,
}

fn message(from: &str, to: &[String], mail: &Mail) -> Result<Message, MailError> {
    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| MailError::Message(format!("{a}: {e}")))
    };
    let mut builder = Message::builder()
        .from(mailbox(from)?)
        .subject(mail.subject.as_str())
        .message_id(None)
        // RFC 3834: a machine wrote this, so vacation responders and
        // mailing lists do not answer it (and cannot start a loop).
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        builder = builder.to(mailbox(address)?);
    }
    // The body is encoded (quoted-printable or base64) when it is not
    // ASCII, so no server needs 8BITMIME for an arrow in "UP → DOWN".
    builder
        .body(mail.body.clone())
        .map_err(|e| MailError::Message(e.to_string()))
}

/// The conversation up to the message's acceptance; the connection is
/// returned for the goodbye.
async fn deliver(
    server: &Server<'_>,
    login: Option<(&str, &str)>,
    message: &Message,
    settings: &MailSettings,
) -> Result<AsyncSmtpConnection, MailError> {
    let stream = connect(server, settings).await?;
    let hello = ClientId::default();
    let scrub = |e: lettre::transport::smtp::Error| Scrubbed::new(e, login.map(|l| l.1));
    let stream: Box<dyn AsyncTokioStream> = match server.tls {
        MailTls::Implicit => {
            let name = ServerName::try_from(tls_name(server.host).to_owned())
                .map_err(|e| MailError::Tls(format!("{}: {e}", server.host)))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&settings.client))
                .connect(name, stream)
                .await
                .map_err(|e| MailError::Tls(e.to_string()))?;
            Box::new(TlsTcp(tls))
        }
        MailTls::Starttls | MailTls::None => Box::new(stream),
    };
    let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
        .await
        .map_err(|e| scrub(e).smtp())?;
    if server.tls == MailTls::Starttls {
        if !conn.can_starttls() {
            conn.abort().await;
            return Err(MailError::Tls(
                "the server does not offer STARTTLS; set the channel's tls to \"implicit\" \
                 (port 465) or, for a local relay only, \"none\""
                    .into(),
            ));
        }
        let parameters = settings.starttls_parameters(tls_name(server.host))?;
        conn.starttls(parameters, &hello)
            .await
            .map_err(|e| MailError::Tls(innermost(&e)))?;
    }
    if let Some((user, password)) = login {
        let credentials = Credentials::new(user.to_owned(), password.to_owned());
        conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .await
            .map_err(|e| scrub(e).auth())?;
    }
    let body = message.formatted();
    conn.send(message.envelope(), &body)
        .await
        .map_err(|e| scrub(e).smtp())?;
    // The message is accepted; the caller says goodbye.
    Ok(conn)
}

/// The name TLS checks the certificate against: the host, or the address
/// of a literal written as `[::1]`.
fn tls_name(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A lettre error as text with every form of the password taken out.
struct Scrubbed {
    text: String,
    permanent: bool,
}

impl Scrubbed {
    fn new(e: lettre::transport::smtp::Error, password: Option<&str>) -> Scrubbed {
        Scrubbed {
            text: scrub(e.to_string(), password),
            permanent: e.is_permanent(),
        }
    }

    fn auth(self) -> MailError {
        MailError::Auth {
            text: self.text,
            permanent: self.permanent,
        }
    }

    fn smtp(self) -> MailError {
        MailError::Smtp {
            text: self.text,
            permanent: self.permanent,
        }
    }
}

/// The root cause of a TLS failure ("invalid peer certificate:
/// UnknownIssuer"), without lettre's "Connection error: " wrappers.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// `text` with `password` replaced by `***`: a server may quote what it
/// was sent, and this text ends up in `GET /alerts` and the logs.
fn scrub(text: String, password: Option<&str>) -> String {
    match password.filter(|p| !p.is_empty()) {
        Some(password) => text.replace(password, "***"),
        None => text,
    }
}

/// Resolves the host, keeps the addresses the policy allows, and connects
/// to the first that answers.
async fn connect(server: &Server<'_>, settings: &MailSettings) -> Result<TcpStream, MailError> {
    let (host, port) = (server.host, server.port);
    let literal = tls_name(host).parse::<IpAddr>().ok();
    let addrs: Vec<SocketAddr> = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => {
            let lookup = tokio::net::lookup_host((host, port));
            match tokio::time::timeout(settings.connect_timeout, lookup).await {
                Err(_) => {
                    return Err(MailError::Timeout {
                        what: "the name lookup",
                        after: settings.connect_timeout,
                    });
                }
                Ok(Err(e)) => {
                    return Err(MailError::Dns {
                        host: host.to_owned(),
                        why: e.to_string(),
                    });
                }
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
    };
    let mut first_blocked = None;
    let mut last_error = None;
    for addr in addrs {
        if let Err(mut blocked) = settings.policy.check(addr.ip()) {
            if literal.is_none() {
                blocked.host = Some(host.to_owned());
            }
            first_blocked.get_or_insert(blocked);
            continue;
        }
        match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last_error = Some(format!("{addr}: {e}")),
            Err(_) => {
                last_error = Some(format!(
                    "{addr}: no answer within {} ms",
                    settings.connect_timeout.as_millis()
                ));
            }
        }
    }
    match (last_error, first_blocked) {
        (Some(why), _) => Err(MailError::Connect {
            host: host.to_owned(),
            port,
            why,
        }),
        (None, Some(blocked)) => Err(MailError::Blocked(blocked)),
        (None, None) => Err(MailError::Dns {
            host: host.to_owned(),
            why: "no address".into(),
        }),
    }
}

/// A TLS connection healthmon set up itself (implicit TLS), handed to
/// lettre as its transport.
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::channel::Secret;

    fn email(tls: MailTls, password: Option<&str>) -> ChannelConfig {
        ChannelConfig::Email {
            host: "127.0.0.1".into(),
            port: 9,
            tls,
            username: password.map(|_| "hm".to_owned()),
            password: password.map(Secret::new),
            from: "healthmon@example.org".into(),
            to: vec!["ops@example.org".into(), "oncall@example.org".into()],
        }
    }

    fn mail() -> Mail {
        Mail {
            subject: "[healthmon] api is DOWN (timeout)".into(),
            body: "Change: UP → DOWN\n".into(),
        }
    }

    fn settings(policy: AddressPolicy) -> MailSettings {
        MailSettings::new(policy, None).unwrap()
    }

    #[test]
    fn the_message_has_every_recipient_and_an_encoded_body() {
        let m = message(
            "healthmon@example.org",
            &["ops@example.org".into(), "oncall@example.org".into()],
            &mail(),
        )
        .unwrap();
        assert_eq!(m.envelope().to().len(), 2);
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.is_ascii(), "{raw}");
        assert!(raw.contains("Subject: [healthmon] api is DOWN (timeout)"));
        assert!(raw.contains("To: ops@example.org, oncall@example.org"));
        assert!(raw.contains("\r\nMessage-ID: <"), "{raw}");
        assert!(
            raw.contains("\r\nAuto-Submitted: auto-generated\r\n"),
            "{raw}"
        );
    }

    #[tokio::test]
    async fn a_blocked_smtp_host_is_never_connected_to() {
        let strict = settings(AddressPolicy::new(true, &[]));
        let err = send(&email(MailTls::None, None), &mail(), &strict)
            .await
            .unwrap_err();
        assert!(matches!(err, MailError::Blocked(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("blocked: blocked address 127.0.0.1")
        );
        assert!(err.is_permanent());
        // A name is resolved and each address judged; the error names it.
        let mut named = email(MailTls::None, None);
        if let ChannelConfig::Email { host, .. } = &mut named {
            *host = "localhost".into();
        }
        let err = send(&named, &mail(), &strict).await.unwrap_err();
        assert!(err.to_string().contains("for localhost"), "{err}");
    }

    #[tokio::test]
    async fn other_kinds_and_bad_addresses_fail_before_connecting() {
        let s = settings(AddressPolicy::default());
        let hook =
            ChannelConfig::parse("webhook", &serde_json::json!({"url": "http://x.example/"}))
                .unwrap();
        assert!(matches!(
            send(&hook, &mail(), &s).await,
            Err(MailError::NotEmail)
        ));
        let mut bad = email(MailTls::None, None);
        if let ChannelConfig::Email { from, .. } = &mut bad {
            *from = "not an address".into();
        }
        let err = send(&bad, &mail(), &s).await.unwrap_err();
        assert!(err.to_string().starts_with("message: "), "{err}");
    }

    #[test]
    fn permanent_failures_are_not_retried_and_the_rest_are() {
        assert!(matches!(outcome(Ok(())), Outcome::Sent));
        let refused = MailError::Smtp {
            text: "permanent error (550): no such user".into(),
            permanent: true,
        };
        assert!(
            matches!(outcome(Err(refused)), Outcome::Fail { error } if error.starts_with("smtp: "))
        );
        let busy = MailError::Smtp {
            text: "transient error (451): try later".into(),
            permanent: false,
        };
        assert!(matches!(
            outcome(Err(busy)),
            Outcome::Retry { after: None, .. }
        ));
        let slow = MailError::Timeout {
            what: "the whole send",
            after: Duration::from_secs(30),
        };
        assert!(matches!(
            outcome(Err(slow)),
            Outcome::Retry { error, .. } if error == "timeout: the whole send took longer than 30000 ms"
        ));
    }

    #[test]
    fn scrubbing_takes_out_the_password() {
        let text = scrub(
            "535 5.7.8 bad password s3cret for hm".into(),
            Some("s3cret"),
        );
        assert_eq!(text, "535 5.7.8 bad password *** for hm");
        assert_eq!(scrub("x".into(), Some("")), "x");
    }
}
