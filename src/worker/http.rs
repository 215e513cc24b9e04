//! The HTTP(S) check: request, bounded body, verdict.

use crate::domain::check::status_is_up;
use crate::domain::time::now_ms;
use crate::domain::{CheckJob, CheckResult, Status};
use crate::worker::guard::{AddressPolicy, Blocked};
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many redirects are followed; more is a DOWN check.
pub const MAX_REDIRECTS: usize = 5;

/// The request header carrying the check's due time (`scheduled_at`, epoch
/// milliseconds), so a target can measure schedule lag as it sees it. Sent
/// only when `checks.send_schedule_header` is on (see
/// [`HttpChecker::send_schedule_header`]).
pub const SCHEDULED_AT_HEADER: &str = "x-healthmon-scheduled-at";

/// Runs HTTP checks with one shared client.
#[derive(Clone)]
pub struct HttpChecker {
    client: reqwest::Client,
    max_body_bytes: usize,
    policy: Arc<AddressPolicy>,
    schedule_header: bool,
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
}

impl HttpChecker {
    /// A checker that reads at most `max_body_bytes` of each response body
    /// and connects only to addresses `policy` allows.
    ///
    /// The policy is enforced wherever an address is chosen: names are
    /// resolved by [`GuardedResolver`], which drops blocked addresses; a
    /// literal address (which the client connects to without resolving it)
    /// is checked before the request and, by the redirect policy, before
    /// every redirect is followed.
    pub fn new(max_body_bytes: usize, policy: AddressPolicy) -> Result<Self, ClientError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .user_agent(concat!("healthmon/", env!("CARGO_PKG_VERSION")))
            .redirect(redirect_policy(Arc::clone(&policy)))
            .dns_resolver(GuardedResolver {
                policy: Arc::clone(&policy),
            })
            // Checks go straight to the target; a proxy from the environment
            // would test the proxy instead.
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            max_body_bytes,
            policy,
            schedule_header: false,
        })
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
        let outcome = tokio::time::timeout(timeout, self.fetch(&job.url, job.scheduled_at)).await;
        let elapsed = start.elapsed().as_millis() as i64;
        let (status, latency_ms, status_code, error) = match outcome {
            Err(_) => (
                Status::Down,
                job.timeout_ms,
                None,
                Some(format!(
                    "timeout: no complete response within {} ms",
                    job.timeout_ms
                )),
            ),
            Ok(Err(FetchError::Blocked(b))) => {
                (Status::Down, elapsed, None, Some(format!("blocked: {b}")))
            }
            Ok(Err(FetchError::Scheme(b))) => (Status::Down, elapsed, None, Some(b.to_string())),
            Ok(Err(FetchError::Http(e))) => (Status::Down, elapsed, None, Some(describe(&e))),
            Ok(Ok(code)) => {
                if status_is_up(code, job.expected_statuses.as_deref()) {
                    (Status::Up, elapsed, Some(code), None)
                } else {
                    let expected = match &job.expected_statuses {
                        Some(list) => format!("{list:?}"),
                        None => "200-399".to_owned(),
                    };
                    (
                        Status::Down,
                        elapsed,
                        Some(code),
                        Some(format!(
                            "status: unexpected status {code} (expected {expected})"
                        )),
                    )
                }
            }
        };
        CheckResult {
            service_id: job.service_id,
            scheduled_at: job.scheduled_at,
            status,
            latency_ms,
            status_code,
            error,
            checked_at: now_ms(),
            cert_expires_at: None,
        }
    }

    /// Sends the request and reads up to the body cap, then drops the rest.
    async fn fetch(&self, url: &str, scheduled_at: i64) -> Result<u16, FetchError> {
        let mut request = self.client.get(url);
        if self.schedule_header {
            request = request.header(SCHEDULED_AT_HEADER, scheduled_at);
        }
        let request = request.build()?;
        self.policy
            .check_url(request.url())
            .map_err(FetchError::Blocked)?;
        let mut response = self.client.execute(request).await?;
        // The client hands back, unfollowed, a redirect whose target it
        // cannot turn into a request (`file:///...`, `javascript:...`);
        // redirects to other schemes are stopped by the redirect policy.
        if let Some(next) = unfollowed_redirect(&response)
            && !matches!(next.scheme(), "http" | "https")
        {
            return Err(FetchError::Scheme(BlockedScheme(next.scheme().to_owned())));
        }
        let code = response.status().as_u16();
        let mut read = 0usize;
        while read < self.max_body_bytes {
            match response.chunk().await? {
                Some(chunk) => read += chunk.len(),
                None => break,
            }
        }
        Ok(code)
    }
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
            let mut blocked = None;
            let allowed: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(b) => {
                        blocked.get_or_insert(b);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match blocked {
                    Some(mut b) => {
                        b.host = Some(host);
                        b.into()
                    }
                    None => format!("no addresses found for {host}").into(),
                });
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
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

/// tokio-rustls wraps its errors in io::Error (sometimes twice), and an
/// io::Error's `source()` skips the error it wraps, so look inside by hand.
fn wraps_tls_error(io: &std::io::Error) -> bool {
    let mut inner = io.get_ref();
    for _ in 0..4 {
        match inner {
            Some(e) if e.is::<rustls::Error>() => return true,
            Some(e) => match e.downcast_ref::<std::io::Error>() {
                Some(next) => inner = next.get_ref(),
                None => return false,
            },
            None => return false,
        }
    }
    false
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
            tls |= wraps_tls_error(io);
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
