//! A health log: one check's result as recorded.

use super::service::ServiceId;
use super::time::{Millis, serde_rfc3339};
use serde::Serialize;

/// A recorded check, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HealthLog {
    /// Its id; also the pagination cursor.
    pub id: i64,
    /// The service checked.
    pub service_id: ServiceId,
    /// UP, DEGRADED or DOWN.
    pub status: String,
    /// Latency in milliseconds.
    pub latency_ms: i64,
    /// HTTP status, when a response arrived.
    pub status_code: Option<i32>,
    /// What went wrong.
    pub error: Option<String>,
    /// When the check finished.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub checked_at: Millis,
    /// When the server's certificate expires, for https and tls checks.
    #[serde(serialize_with = "serde_rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cert_expires_at: Option<Millis>,
    /// The region whose vote it is, for a service with `regions`; `null`
    /// for one without (one log a round, whichever worker ran it).
    pub region: Option<String>,
}
