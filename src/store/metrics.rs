//! What `GET /metrics` reads from the store at scrape time.

use super::schema::services;
use super::{Backend, Store, StoreError};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// How many services share one (paused, last status) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// Whether they are paused.
    pub paused: bool,
    /// Their last status as stored (`UP`, `DOWN`, ...).
    pub status: String,
    /// How many.
    pub count: i64,
}

impl Store {
    /// Services counted by paused and last status: one grouped query, so a
    /// scrape costs the same at 10 or 100,000 services (an index-only pass
    /// at most, no rows sent).
    pub async fn count_services_by_status(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows: Vec<(bool, String, i64)> = with_conn!(self, |conn| {
            services::table
                .group_by((services::paused, services::last_status))
                .select((services::paused, services::last_status, count_star()))
                .load(conn)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(paused, status, count)| StatusCount {
                paused,
                status,
                count,
            })
            .collect())
    }
}
