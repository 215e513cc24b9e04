//! What the scheduler's periodic reconcile reads: the services changed
//! since a moment, push services with a round logged since then, and the
//! ids of every service (to find those deleted) — instead of every
//! service whole, which at a million services was 500 pages of 2,000 rows
//! a minute (BENCHMARKS.md "A million services, embedded").
//!
//! Every settings change stamps `updated_at` (`Store::update_service`,
//! registration); the walk is along `services_by_updated_at (updated_at,
//! id)` with a keyset cursor, so a page costs its own rows. Push services'
//! pings move `last_scheduled_at` and not `updated_at`: those are walked
//! along the partial index of push tokens, which holds push services only.

use super::models::ServiceRow;
use super::schema::services;
use super::{Backend, Store, StoreError};
use crate::domain::Service;
use crate::domain::time::Millis;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// Where a walk of changed services stands: past every service changed
/// before `updated_at`, and those changed at it up to `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedCursor {
    /// The `updated_at` of the last service read (the walk's start, first).
    pub updated_at: Millis,
    /// Its id (0, first).
    pub id: i64,
}

impl ChangedCursor {
    /// The start of a walk of the services changed at or after `since`.
    pub fn since(since: Millis) -> Self {
        Self {
            updated_at: since,
            id: 0,
        }
    }

    /// The cursor after `svc`, the last of a page.
    pub fn after(svc: &Service) -> Self {
        Self {
            updated_at: svc.updated_at,
            id: svc.id.get(),
        }
    }
}

impl Store {
    /// At most `limit` services changed (`updated_at`) after `cursor`, in
    /// (`updated_at`, id) order; paused ones included, so that a pause is
    /// seen.
    pub async fn services_changed_after(
        &self,
        cursor: ChangedCursor,
        limit: i64,
    ) -> Result<Vec<Service>, StoreError> {
        let ChangedCursor { updated_at, id } = cursor;
        with_conn!(self, |conn| {
            let rows: Vec<ServiceRow> = services::table
                .filter(services::updated_at.ge(updated_at))
                .filter(services::updated_at.gt(updated_at).or(services::id.gt(id)))
                .select(ServiceRow::as_select())
                .order((services::updated_at.asc(), services::id.asc()))
                .limit(limit.max(1))
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(ServiceRow::into_service).collect())
        })
    }

    /// Push services with a round logged (`last_scheduled_at`) at or after
    /// `since`, walked by token hash: at most `limit` after the hash
    /// `after` ("" first), each with its hash (the next call's `after`);
    /// a page shorter than `limit` is the last.
    pub async fn push_services_logged_since(
        &self,
        since: Millis,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, Service)>, StoreError> {
        let after = after.to_owned();
        with_conn!(self, |conn| {
            let rows: Vec<(Option<String>, ServiceRow)> = services::table
                .filter(services::push_token_hash.gt(after.clone()))
                .filter(services::last_scheduled_at.ge(since))
                .select((services::push_token_hash, ServiceRow::as_select()))
                .order(services::push_token_hash.asc())
                .limit(limit.max(1))
                .load(conn)
                .await?;
            Ok(rows
                .into_iter()
                .filter_map(|(hash, row)| Some((hash?, row.into_service())))
                .collect())
        })
    }

    /// At most `limit` service ids above `after`, in order.
    pub async fn service_ids_after(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        with_conn!(self, |conn| {
            Ok(services::table
                .filter(services::id.gt(after))
                .select(services::id)
                .order(services::id.asc())
                .limit(limit.max(1))
                .load(conn)
                .await?)
        })
    }
}
