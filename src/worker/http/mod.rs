//! The HTTP(S) check: request (method, headers, body as the service says),
//! bounded body, verdict (DESIGN.md "Check kinds").
//!
//! The response body is kept in memory only when an assertion reads it
//! (`body_contains`, `body_not_contains`, `json`: see [`judge`]); otherwise
//! it is counted and dropped up to `worker.max_body_bytes`, as fast as it
//! comes. The server's certificate (https) is read from the connection for
//! its expiry date ([`cert`]).

pub(crate) mod cert;
mod judge;

use crate::domain::check::status_is_up;
use crate::domain::time::now_ms;
use crate::domain::{CheckJob, CheckOptions, CheckResult};
use crate::worker::check::{CheckerSettings, Outcome};
use crate::worker::guard::{AddressPolicy, Blocked};
use judge::{Body, Fetched};
use reqwest::header::{HeaderName, HeaderValue};
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many redirects are followed; more is a DOWN check.
pub const MAX_REDIRECTS: usize = 5;

/// The request header carrying the check's due time (`scheduled_at`, epoch
/// milliseconds), so a target can measure schedule lag as it sees it. Sent
/// only when `checks.send_schedule_header` is on (see
/// [`HttpChecker::send_schedule_header`]).
pub const SCHEDULED_AT_HEADER: &str = "x-healthmon-scheduled-at";

/// The request header naming the checking worker's region (DESIGN.md
/// "Regions and quorum"), so a target can tell the regions' requests apart.
pub const REGION_HEADER: &str = "x-healthmon-region";

/// Runs HTTP checks with shared clients: one that follows redirects and one
/// that does not (`follow_redirects: false`), with the same resolver,
/// address policy and trust.
#[derive(Clone)]
pub struct HttpChecker {
    follow: reqwest::Client,
    no_follow: reqwest::Client,
    max_body_bytes: usize,
    policy: Arc<AddressPolicy>,
    schedule_header: bool,
    /// [`REGION_HEADER`]'s value, when the worker has a region.
    region: Option<HeaderValue>,
}

/// A checker could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be built (a TLS setup problem).
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// `checks.ca_file` could not be read or holds no certificate.
    #[error("checks.ca_file {path}: {reason}")]
    CaFile {
        /// The file as configured.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the TLS client configuration.
    #[error("TLS configuration: {0}")]
    Tls(rustls::Error),
}

impl From<crate::tls::TlsError> for ClientError {
    fn from(e: crate::tls::TlsError) -> Self {
        match e {
            crate::tls::TlsError::CaFile { path, why } => Self::CaFile {
                path: path.display().to_string(),
                reason: why,
            },
            crate::tls::TlsError::Rustls(e) => Self::Tls(e),
        }
    }
}

impl HttpChecker {
    /// A checker that reads at most `settings.max_body_bytes` of each
    /// response body, trusts the system's roots plus `settings.ca_file`, and
    /// connects only to addresses `settings.policy` allows.
    ///
    /// The policy is enforced wherever an address is chosen: names are
    /// resolved by [`GuardedResolver`], which drops blocked addresses; a
    /// literal address (which the client connects to without resolving it)
    /// is checked before the request and, by the redirect policy, before
    /// every redirect is followed.
    pub fn new(settings: &CheckerSettings) -> Result<Self, ClientError> {
        let policy = Arc::new(settings.policy.clone());
        // Our own rustls configuration rather than reqwest's: the same trust
        // as SMTP and tls:// checks (system roots plus checks.ca_file, read
        // once here), on ring, whether or not a process-wide provider was
        // installed.
        let mut tls = crate::tls::verifying_client(settings.ca_file.as_deref())?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let follow = client(&policy, tls.clone(), redirect_policy(Arc::clone(&policy)))?;
        let no_follow = client(&policy, tls, reqwest::redirect::Policy::none())?;
        Ok(Self {
            follow,
            no_follow,
            max_body_bytes: settings.max_body_bytes,
            policy,
            schedule_header: settings.schedule_header,
            region: None,
        })
    }

    /// Requests carry [`REGION_HEADER`] with `region` (a name as
    /// `validate::check_region` allows, so always a valid header value).
    pub fn in_region(mut self, region: &str) -> Self {
        self.region = HeaderValue::from_str(region).ok();
        self
    }

    /// Whether requests carry [`SCHEDULED_AT_HEADER`] (off unless turned on:
    /// it is for the benchmark, and real targets have no use for it).
    pub fn send_schedule_header(mut self, on: bool) -> Self {
        self.schedule_header = on;
        self
    }

    /// Runs one check. The job's timeout bounds the whole check, from the
    /// request to the end of the (capped) body; a timed-out check is DOWN
    /// with its latency equal to the timeout.
    pub async fn run(&self, job: &CheckJob) -> CheckResult {
        let timeout = Duration::from_millis(job.timeout_ms.max(1) as u64);
        let start = Instant::now();
        let fetched = tokio::time::timeout(timeout, self.fetch(job)).await;
        let elapsed = start.elapsed().as_millis() as i64;
        let outcome = match fetched {
            Err(_) => Outcome::down(
                job.timeout_ms,
                format!("timeout: no complete response within {} ms", job.timeout_ms),
            ),
            Ok(Err(FetchError::Blocked(b))) => Outcome::down(elapsed, format!("blocked: {b}")),
            Ok(Err(FetchError::Scheme(b))) => Outcome::down(elapsed, b.to_string()),
            Ok(Err(FetchError::Request(what))) => Outcome::down(elapsed, what),
            Ok(Err(FetchError::Http(e))) => cert::failed_handshake(&e, elapsed)
                .unwrap_or_else(|| Outcome::down(elapsed, describe(&e))),
            Ok(Ok(fetched)) => judge::verdict(job, &fetched, elapsed, now_ms()),
        };
        outcome.into_result(job)
    }

    /// Sends the request as the job's options say and reads the body: into
    /// memory (up to the cap) when an assertion needs it, else counted and
    /// dropped at the cap.
    async fn fetch(&self, job: &CheckJob) -> Result<Fetched, FetchError> {
        let opts = &job.check;
        let follow = opts.follow_redirects.unwrap_or(true);
        let client = if follow {
            &self.follow
        } else {
            &self.no_follow
        };
        let request = self.request(client, job)?.build()?;
        self.policy
            .check_url(request.url())
            .map_err(FetchError::Blocked)?;
        let mut response = client.execute(request).await?;
        // The client hands back, unfollowed, a redirect whose target it
        // cannot turn into a request (`file:///...`, `javascript:...`);
        // redirects to other schemes are stopped by the redirect policy.
        // Without following, a redirect is an answer like any other.
        if follow
            && let Some(next) = unfollowed_redirect(&response)
            && !matches!(next.scheme(), "http" | "https")
        {
            return Err(FetchError::Scheme(BlockedScheme(next.scheme().to_owned())));
        }
        let code = response.status().as_u16();
        let cert_expires_at = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::peer_certificate)
            .and_then(cert::not_after_ms);
        // A failing status is the verdict already: its body is not judged.
        let body = if reads_body(opts) && status_is_up(code, job.expected_statuses.as_deref()) {
            Some(self.read_body(&mut response).await?)
        } else {
            self.drain(&mut response).await?;
            None
        };
        Ok(Fetched {
            code,
            body,
            cert_expires_at,
        })
    }

    /// The request the job describes.
    fn request(
        &self,
        client: &reqwest::Client,
        job: &CheckJob,
    ) -> Result<reqwest::RequestBuilder, FetchError> {
        let opts = &job.check;
        let method = match opts.method.as_deref() {
            None => reqwest::Method::GET,
            Some(m) => reqwest::Method::from_bytes(m.as_bytes()).map_err(|_| {
                FetchError::Request(format!("connect: {m:?} is not an HTTP method"))
            })?,
        };
        let mut request = client.request(method, &job.url);
        if self.schedule_header {
            // A static name is not parsed and checked again per request.
            request = request.header(
                HeaderName::from_static(SCHEDULED_AT_HEADER),
                job.scheduled_at,
            );
        }
        if let Some(region) = &self.region {
            request = request.header(HeaderName::from_static(REGION_HEADER), region.clone());
        }
        for (name, value) in opts.headers.iter().flatten() {
            // The name may be shown, the value never: it often is a token.
            let bad = || FetchError::Request(format!("connect: header {name:?} cannot be sent"));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let mut value = HeaderValue::from_str(value).map_err(|_| bad())?;
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        if let Some(body) = &opts.body {
            request = request.body(body.clone());
        }
        Ok(request)
    }

    /// Reads the body into memory up to the cap; a body longer than the cap
    /// is cut there (and the rest left unread).
    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Body, FetchError> {
        let max = self.max_body_bytes;
        let hint = response.content_length().unwrap_or(0).min(max as u64) as usize;
        let mut bytes = Vec::with_capacity(hint);
        // Reading one chunk past a body of exactly `max` bytes tells a cut
        // body from a complete one.
        while bytes.len() <= max {
            match response.chunk().await? {
                Some(chunk) => bytes.extend_from_slice(&chunk),
                None => return Ok(Body { bytes, cut: None }),
            }
        }
        bytes.truncate(max);
        Ok(Body {
            bytes,
            cut: Some(max),
        })
    }

    /// Reads up to the cap without keeping anything, then drops the rest.
    async fn drain(&self, response: &mut reqwest::Response) -> Result<(), FetchError> {
        let mut read = 0usize;
        while read < self.max_body_bytes {
            match response.chunk().await? {
                Some(chunk) => read += chunk.len(),
                None => break,
            }
        }
        Ok(())
    }
}

/// Whether an assertion of `opts` reads the response body.
fn reads_body(opts: &CheckOptions) -> bool {
    opts.body_contains.is_some()
        || opts.body_not_contains.is_some()
        || opts.json.as_ref().is_some_and(|j| !j.is_empty())
}

/// One of the checker's clients: `redirect` decides what it follows.
fn client(
    policy: &Arc<AddressPolicy>,
    tls: rustls::ClientConfig,
    redirect: reqwest::redirect::Policy,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("healthmon/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect)
        .dns_resolver(GuardedResolver {
            policy: Arc::clone(policy),
        })
        .tls_backend_preconfigured(tls)
        // The server's certificate on every response (pooled connections
        // included), for its expiry date.
        .tls_info(true)
        // Checks go straight to the target; a proxy from the environment
        // would test the proxy instead.
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
}

/// Where a redirect that reached us unfollowed points, if it is one.
fn unfollowed_redirect(response: &reqwest::Response) -> Option<url::Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    response.url().join(location).ok()
}

/// Why a check got no response.
enum FetchError {
    /// The target's literal address is blocked.
    Blocked(Blocked),
    /// A redirect points to a scheme other than http(s).
    Scheme(BlockedScheme),
    /// The options make no valid request (a method or header that
    /// validation let through): the error to show, reason code first.
    Request(String),
    /// The request failed (a blocked resolved address or redirect included).
    Http(reqwest::Error),
}

impl From<reqwest::Error> for FetchError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e)
    }
}

/// The redirect policy error when a chain is longer than [`MAX_REDIRECTS`].
#[derive(Debug, thiserror::Error)]
#[error("too many redirects")]
struct TooManyRedirects;

/// The redirect policy error for a redirect to a scheme other than HTTP(S).
#[derive(Debug, thiserror::Error)]
#[error("blocked: a redirect to a {0}: URL is not followed (only http and https)")]
struct BlockedScheme(String);

/// Follows at most [`MAX_REDIRECTS`] redirects, none to a scheme other than
/// http(s), and none to a blocked literal address (a name is checked when it
/// is resolved).
fn redirect_policy(policy: Arc<AddressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` starts with the first URL, which is not a redirect.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(TooManyRedirects);
        }
        // A `file:`, `ftp:` or `gopher:` target is not what a check of a web
        // service may be sent to, whatever its address; judged before the
        // client would refuse it with a message that names no reason.
        let scheme = attempt.url().scheme();
        if !matches!(scheme, "http" | "https") {
            let scheme = scheme.to_owned();
            return attempt.error(BlockedScheme(scheme));
        }
        match policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(blocked) => attempt.error(blocked),
        }
    })
}

/// Resolves names with the system resolver (on tokio's blocking pool) and
/// keeps only the addresses the policy allows, so a DNS answer cannot lead a
/// check to a blocked address. With none left, resolution fails with the
/// first [`Blocked`] address.
pub(crate) struct GuardedResolver {
    /// The rules every resolved address must pass.
    pub(crate) policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            match policy.allowed(resolved, Some(&host)) {
                Ok(allowed) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                Err(Some(blocked)) => Err(blocked.into()),
                Err(None) => Err(format!("no addresses found for {host}").into()),
            }
        })
    }
}

/// The [`Blocked`] address somewhere in an error's chain: from the resolver
/// or the redirect policy.
pub(crate) fn find_blocked(e: &reqwest::Error) -> Option<&Blocked> {
    find_source::<Blocked>(e)
}

/// The first error of type `T` in an error's chain.
fn find_source<T: std::error::Error + 'static>(e: &reqwest::Error) -> Option<&T> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<T>() {
            return Some(found);
        }
        source = s.source();
    }
    None
}

/// The rustls error somewhere in an error's chain (a failed handshake).
pub(crate) fn find_tls_error(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = s.downcast_ref::<std::io::Error>().and_then(tls_error_in) {
            return Some(found);
        }
        source = s.source();
    }
    None
}

/// tokio-rustls wraps its errors in io::Error (sometimes twice), and an
/// io::Error's `source()` skips the error it wraps, so look inside by hand.
fn tls_error_in(io: &std::io::Error) -> Option<&rustls::Error> {
    let mut inner = io.get_ref();
    for _ in 0..4 {
        let e = inner?;
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = e.downcast_ref::<std::io::Error>()?.get_ref();
    }
    None
}

/// Says what went wrong in words a person can act on, after the reason code
/// of DESIGN.md (`connect: ...`, `dns: ...`, `tls: ...`), which alerts show
/// and receivers can sort by. The URL is left out: it may carry a password.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if let Some(blocked) = find_blocked(e) {
        return format!("blocked: {blocked}");
    }
    if let Some(scheme) = find_source::<BlockedScheme>(e) {
        return scheme.to_string();
    }
    if e.is_redirect() {
        return format!("status: too many redirects (more than {MAX_REDIRECTS})");
    }
    let mut chain = Vec::new();
    let mut tls = false;
    let mut source = e.source();
    while let Some(s) = source {
        tls |= s.is::<rustls::Error>();
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            tls |= tls_error_in(io).is_some();
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "connect: connection refused".into();
                }
                std::io::ErrorKind::ConnectionReset => {
                    return "connect: connection reset by peer".into();
                }
                _ => {}
            }
        }
        let text = s.to_string();
        if !chain.contains(&text) {
            chain.push(text);
        }
        source = s.source();
    }
    let detail = chain.join(": ");
    let lower = detail.to_ascii_lowercase();
    let kind = if lower.contains("dns error") || lower.contains("failed to lookup") {
        "dns: DNS lookup failed"
    } else if tls || lower.contains("certificate") || lower.contains("tls handshake") {
        "tls: TLS error"
    } else if e.is_connect() {
        "connect: connection failed"
    } else if e.is_body() || e.is_decode() {
        "body: error reading response body"
    } else {
        "connect: request failed"
    };
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}
