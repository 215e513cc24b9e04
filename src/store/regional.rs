//! The store's side of regional rounds (DESIGN.md "Regions and quorum"):
//! reading back a round's votes, and writing the alerts about regions.

use super::alerts::NewPlainAlert;
use super::schema::{alerts, channels, health_logs, services};
use super::{Backend, Store, StoreError};
use crate::domain::outbox::{AlertEvent, AlertPayload, RegionNote};
use crate::domain::time::Millis;
use crate::domain::{CheckResult, ServiceId, Status};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::collections::HashSet;

/// Rounds read back per query (the rest in further queries).
const ROUNDS_PER_QUERY: usize = 500;

/// What a regional round needs to know of its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundRule {
    /// The service.
    pub id: ServiceId,
    /// The regions it lists (none: not regional).
    pub regions: Vec<String>,
    /// Its quorum, if set.
    pub quorum: Option<u32>,
    /// Its check timeout, in milliseconds.
    pub timeout_ms: Millis,
}

/// A vote as logged.
#[derive(Queryable)]
struct VoteRow {
    service_id: i64,
    scheduled_at: i64,
    status: String,
    latency_ms: i64,
    status_code: Option<i32>,
    error: Option<String>,
    checked_at: i64,
    cert_expires_at: Option<i64>,
    region: String,
}

impl Store {
    /// The round rules of `ids` (those that exist), in one query per
    /// [`ROUNDS_PER_QUERY`] services: the recorder learns the services of
    /// a batch of votes at once, not one read per vote.
    pub async fn round_rules(&self, ids: &[ServiceId]) -> Result<Vec<RoundRule>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROUNDS_PER_QUERY) {
            let ids: Vec<i64> = chunk.iter().map(|id| id.get()).collect();
            let rows: Vec<(i64, String, Option<i32>, i64)> = with_conn!(self, |conn| {
                services::table
                    .filter(services::id.eq_any(&ids))
                    .select((
                        services::id,
                        services::regions,
                        services::quorum,
                        services::timeout_s,
                    ))
                    .load(conn)
                    .await?
            });
            out.extend(
                rows.into_iter()
                    .map(|(id, regions, quorum, timeout_s)| RoundRule {
                        id: ServiceId(id),
                        regions: super::models::decode_tags(&regions),
                        quorum: super::models::decode_quorum(quorum),
                        timeout_ms: timeout_s.saturating_mul(1000),
                    }),
            );
        }
        Ok(out)
    }

    /// The votes logged for `rounds` (service, when due): the logs with a
    /// region. A recorder completes a round with them when it did not get
    /// every vote itself (it took over from another one).
    pub async fn round_votes(
        &self,
        rounds: &[(ServiceId, Millis)],
    ) -> Result<Vec<CheckResult>, StoreError> {
        let mut out = Vec::new();
        for chunk in rounds.chunks(ROUNDS_PER_QUERY) {
            let wanted: HashSet<(i64, i64)> = chunk.iter().map(|(s, at)| (s.get(), *at)).collect();
            let ids: Vec<i64> = wanted.iter().map(|(s, _)| *s).collect();
            let times: Vec<i64> = wanted.iter().map(|(_, at)| *at).collect();
            let rows: Vec<VoteRow> = with_conn!(self, |conn| {
                health_logs::table
                    .filter(health_logs::service_id.eq_any(&ids))
                    .filter(health_logs::scheduled_at.eq_any(&times))
                    .filter(health_logs::region.ne(""))
                    .select((
                        health_logs::service_id,
                        health_logs::scheduled_at,
                        health_logs::status,
                        health_logs::latency_ms,
                        health_logs::status_code,
                        health_logs::error,
                        health_logs::checked_at,
                        health_logs::cert_expires_at,
                        health_logs::region,
                    ))
                    .load(conn)
                    .await?
            });
            // The two lists match more pairs than asked for; keep the asked.
            out.extend(
                rows.into_iter()
                    .filter(|r| wanted.contains(&(r.service_id, r.scheduled_at)))
                    .map(|r| CheckResult {
                        service_id: ServiceId(r.service_id),
                        scheduled_at: r.scheduled_at,
                        // An unreadable status (edited by hand) is no vote.
                        status: r.status.parse().unwrap_or(Status::Pending),
                        latency_ms: r.latency_ms,
                        status_code: r.status_code.and_then(|c| u16::try_from(c).ok()),
                        error: r.error,
                        checked_at: r.checked_at,
                        cert_expires_at: r.cert_expires_at,
                        region: Some(r.region),
                    }),
            );
        }
        Ok(out)
    }

    /// Writes a `region_impaired` or `region_recovered` alert for `region`
    /// to every channel that gets every service's alerts, due at once, and
    /// returns how many. The sender delivers them like any other.
    pub async fn create_region_alerts(
        &self,
        event: AlertEvent,
        region: &RegionNote,
        at: Millis,
    ) -> Result<usize, StoreError> {
        let impaired = event == AlertEvent::RegionImpaired;
        let payload = AlertPayload {
            service_name: format!("region {}", region.name),
            since: Some(at),
            check: None,
            region: Some(region.clone()),
        };
        // Strings and numbers only: serializing cannot fail.
        let payload = serde_json::to_string(&payload).unwrap_or_else(|_| "{}".to_owned());
        let (old_status, new_status) = if impaired {
            (Status::Up.as_str(), Status::Down.as_str())
        } else {
            (Status::Down.as_str(), Status::Up.as_str())
        };
        with_writer!(self, |conn| {
            Ok(conn
                .transaction::<_, DieselError, _>(async |conn| {
                    let targets: Vec<i64> = channels::table
                        .filter(channels::all_services.eq(true))
                        .select(channels::id)
                        .load(conn)
                        .await?;
                    let rows: Vec<NewPlainAlert> = targets
                        .into_iter()
                        .map(|channel_id| NewPlainAlert {
                            service_id: None,
                            channel_id,
                            event: event.as_str(),
                            old_status,
                            new_status,
                            scheduled_at: at,
                            payload: payload.clone(),
                            state: crate::domain::alert_view::AlertState::Pending.as_str(),
                            attempts: 0,
                            created_at: at,
                            next_attempt_at: at,
                        })
                        .collect();
                    // One by one: SQLite takes no multi-row insert with
                    // a NULL column; a fleet has few such channels.
                    let mut written = 0;
                    for row in &rows {
                        written += diesel::insert_into(alerts::table)
                            .values(row)
                            .execute(conn)
                            .await?;
                    }
                    Ok(written)
                })
                .await?)
        })
    }
}
