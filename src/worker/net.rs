//! Checks below HTTP: `tcp://` connects, `tls://` handshakes and `dns://`
//! queries, through the same target safety as HTTP.

use crate::domain::{CheckJob, CheckResult};
use crate::worker::check::{CheckerSettings, Outcome};
use crate::worker::guard::AddressPolicy;
use crate::worker::http::ClientError;
use std::sync::Arc;

/// Runs `tcp://`, `tls://` and `dns://` checks.
#[derive(Clone)]
pub struct NetChecker {
    #[allow(dead_code, reason = "used by the checks being built")]
    policy: Arc<AddressPolicy>,
}

impl NetChecker {
    /// A checker for `settings`.
    pub fn new(settings: &CheckerSettings) -> Result<Self, ClientError> {
        Ok(Self {
            policy: Arc::new(settings.policy.clone()),
        })
    }

    /// Runs one check of a `tcp://`, `tls://` or `dns://` URL.
    pub async fn run(&self, job: &CheckJob) -> CheckResult {
        Outcome::down(0, "connect: this check kind is not supported yet").into_result(job)
    }
}
