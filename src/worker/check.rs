//! One check of any kind: the URL's scheme picks the checker
//! (DESIGN.md "Check kinds"), and every kind ends in the same
//! [`CheckResult`], so the recorder and everything after it need not know
//! kinds exist.

use crate::domain::time::{Millis, now_ms};
use crate::domain::{CheckJob, CheckKind, CheckResult, Status};
use crate::worker::guard::AddressPolicy;
use crate::worker::http::HttpChecker;
pub use crate::worker::http::{ClientError, MAX_REDIRECTS, SCHEDULED_AT_HEADER};
use crate::worker::net::NetChecker;

/// What one kind's check found, before it becomes a [`CheckResult`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// UP, DEGRADED or DOWN.
    pub status: Status,
    /// Milliseconds the check took (the timeout, for a timed-out check).
    pub latency_ms: i64,
    /// HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    /// For a failing or DEGRADED check: the reason code of DESIGN.md, a
    /// colon, and what a person can act on.
    pub error: Option<String>,
    /// When the server's certificate expires (https, tls).
    pub cert_expires_at: Option<Millis>,
}

impl Outcome {
    /// A passing check.
    pub fn up(latency_ms: i64) -> Self {
        Self {
            status: Status::Up,
            latency_ms,
            status_code: None,
            error: None,
            cert_expires_at: None,
        }
    }

    /// A failing check; `error` starts with its reason code.
    pub fn down(latency_ms: i64, error: impl Into<String>) -> Self {
        Self {
            status: Status::Down,
            latency_ms,
            status_code: None,
            error: Some(error.into()),
            cert_expires_at: None,
        }
    }

    /// The result to publish for `job`.
    pub fn into_result(self, job: &CheckJob) -> CheckResult {
        CheckResult {
            service_id: job.service_id,
            scheduled_at: job.scheduled_at,
            status: self.status,
            latency_ms: self.latency_ms,
            status_code: self.status_code,
            error: self.error,
            checked_at: now_ms(),
            cert_expires_at: self.cert_expires_at,
            // A regional job is taken only by its region's workers.
            region: job.region.clone(),
        }
    }
}

/// A worker's region unless it is given one (`worker.region`'s default).
pub const DEFAULT_REGION: &str = "default";

/// How checks are made: shared by every kind.
#[derive(Debug, Clone)]
pub struct CheckerSettings {
    /// At most this much of an HTTP response body is read.
    pub max_body_bytes: usize,
    /// The addresses checks may connect to (DESIGN.md "Target safety").
    pub policy: AddressPolicy,
    /// PEM file of extra trust roots for HTTPS and `tls://` checks
    /// (`checks.ca_file`); the system roots stay trusted.
    pub ca_file: Option<std::path::PathBuf>,
    /// Whether HTTP requests carry the schedule header (benchmarks).
    pub schedule_header: bool,
}

/// Runs checks of every kind, with clients shared across checks.
#[derive(Clone)]
pub struct Checker {
    http: HttpChecker,
    net: NetChecker,
    /// The region it checks from (`worker.region`).
    region: String,
}

impl Checker {
    /// A checker that reads at most `max_body_bytes` of each response body
    /// and connects only to addresses `policy` allows.
    pub fn new(max_body_bytes: usize, policy: AddressPolicy) -> Result<Self, ClientError> {
        Self::with_settings(CheckerSettings {
            max_body_bytes,
            policy,
            ca_file: None,
            schedule_header: false,
        })
    }

    /// A checker made as `settings` say.
    pub fn with_settings(settings: CheckerSettings) -> Result<Self, ClientError> {
        let http = HttpChecker::new(&settings)?;
        let net = NetChecker::new(&settings)?;
        Ok(Self {
            http: http.in_region(DEFAULT_REGION),
            net,
            region: DEFAULT_REGION.to_owned(),
        })
    }

    /// The checker of a worker in `region`: it takes that region's jobs
    /// (see `crate::worker::run`) and its HTTP requests say so
    /// ([`crate::worker::http::REGION_HEADER`]).
    pub fn in_region(mut self, region: &str) -> Self {
        self.http = self.http.in_region(region);
        self.region = region.to_owned();
        self
    }

    /// The region it checks from.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether HTTP requests carry [`SCHEDULED_AT_HEADER`].
    pub fn send_schedule_header(mut self, on: bool) -> Self {
        self.http = self.http.send_schedule_header(on);
        self
    }

    /// Runs one check. The job's timeout bounds the whole check; a
    /// timed-out check is DOWN with its latency equal to the timeout.
    pub async fn run(&self, job: &CheckJob) -> CheckResult {
        match CheckKind::of_url(&job.url) {
            CheckKind::Http => self.http.run(job).await,
            CheckKind::Tcp | CheckKind::Tls | CheckKind::Dns => self.net.run(job).await,
            // Push services are judged by the scheduler's deadline, and the
            // pool drops their jobs before they get here (worker::run); a
            // direct call gets an answer that says why nothing was requested.
            CheckKind::Push => {
                Outcome::down(0, "missed_ping: push services are not checked by workers")
                    .into_result(job)
            }
        }
    }
}
