//! The alert outbox as the API reads it: listing and reading alerts, and
//! writing a channel's test alert; and its retention (log maintenance
//! deletes delivered and failed alerts once old).

use super::LogCursor;
use super::schema::{alerts, channels};
use super::{Backend, Store, StoreError};
use crate::domain::alert_view::{AlertFilter, AlertState, AlertView};
use crate::domain::outbox::{AlertEvent, AlertPayload};
use crate::domain::time::Millis;
use crate::domain::{ChannelId, ServiceId, Status};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// The name a test alert's message gives its service.
pub const TEST_SERVICE_NAME: &str = "healthmon test";

/// The `alerts` columns the API shows.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alerts)]
struct AlertViewRow {
    id: i64,
    service_id: Option<i64>,
    channel_id: i64,
    event: String,
    state: String,
    attempts: i32,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
}

impl From<AlertViewRow> for AlertView {
    fn from(r: AlertViewRow) -> Self {
        AlertView {
            id: r.id,
            service_id: r.service_id.map(ServiceId),
            channel_id: ChannelId(r.channel_id),
            event: r.event,
            state: r.state,
            attempts: r.attempts,
            last_error: r.last_error,
            created_at: r.created_at,
            sent_at: r.sent_at,
        }
    }
}

/// A new `alerts` row written on its own, not by a recorded batch: a
/// channel test, a region's alert.
#[derive(Insertable)]
#[diesel(table_name = alerts)]
pub(super) struct NewPlainAlert {
    pub(super) service_id: Option<i64>,
    pub(super) channel_id: i64,
    pub(super) event: &'static str,
    pub(super) old_status: &'static str,
    pub(super) new_status: &'static str,
    pub(super) scheduled_at: i64,
    pub(super) payload: String,
    pub(super) state: &'static str,
    pub(super) attempts: i32,
    pub(super) created_at: i64,
    pub(super) next_attempt_at: i64,
}

impl Store {
    /// A page of alerts, newest first (by id, which follows creation).
    /// `cursor` is an alert id (older ones follow) or a time (alerts created
    /// before it).
    pub async fn list_alerts(
        &self,
        filter: AlertFilter,
        limit: i64,
        cursor: Option<LogCursor>,
    ) -> Result<Vec<AlertView>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = alerts::table.select(AlertViewRow::as_select()).into_boxed();
            if let Some(service) = filter.service_id {
                query = query.filter(alerts::service_id.eq(service.get()));
            }
            if let Some(channel) = filter.channel_id {
                query = query.filter(alerts::channel_id.eq(channel.get()));
            }
            if let Some(state) = filter.state {
                query = query.filter(alerts::state.eq(state.as_str()));
            }
            match cursor {
                Some(LogCursor::BeforeId(before)) => query = query.filter(alerts::id.lt(before)),
                Some(LogCursor::BeforeTime(t)) => query = query.filter(alerts::created_at.lt(t)),
                None => {}
            }
            let rows: Vec<AlertViewRow> = query
                .order(alerts::id.desc())
                .limit(limit.max(1))
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(AlertView::from).collect())
        })
    }

    /// One alert.
    pub async fn get_alert(&self, id: i64) -> Result<Option<AlertView>, StoreError> {
        with_conn!(self, |conn| {
            let row: Option<AlertViewRow> = alerts::table
                .find(id)
                .select(AlertViewRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.map(AlertView::from))
        })
    }

    /// Writes a `test` alert for `channel`, due at once; `None` if there is
    /// no such channel. The sender delivers it like any other.
    pub async fn create_test_alert(
        &self,
        channel: ChannelId,
        now: Millis,
    ) -> Result<Option<AlertView>, StoreError> {
        let payload = AlertPayload {
            service_name: TEST_SERVICE_NAME.to_owned(),
            since: Some(now),
            check: None,
            region: None,
        };
        let row = NewPlainAlert {
            service_id: None,
            channel_id: channel.get(),
            event: AlertEvent::Test.as_str(),
            // A test shows what a real DOWN alert would look like.
            old_status: Status::Up.as_str(),
            new_status: Status::Down.as_str(),
            scheduled_at: now,
            payload: serde_json::to_string(&payload).unwrap_or_else(|_| "{}".to_owned()),
            state: AlertState::Pending.as_str(),
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
        };
        with_writer!(self, |conn| {
            let created = conn
                .transaction::<_, DieselError, _>(async |conn| {
                    // In the transaction, so a channel deleted meanwhile
                    // cannot be left with a pending test.
                    let exists: Option<i64> = channels::table
                        .find(channel.get())
                        .select(channels::id)
                        .first(conn)
                        .await
                        .optional()?;
                    if exists.is_none() {
                        return Ok(None);
                    }
                    diesel::insert_into(alerts::table)
                        .values(&row)
                        .returning(AlertViewRow::as_returning())
                        .get_result(conn)
                        .await
                        .map(Some)
                })
                .await?;
            Ok(created.map(AlertView::from))
        })
    }
}

impl Store {
    /// Deletes at most `batch` alerts that are done (`sent` or `failed`)
    /// and were created before `cutoff`, and returns how many went. A
    /// `pending` alert stays whatever its age: the sender still owns it.
    /// One short statement (served by the `(state, created_at)` index): call
    /// it in a loop for a backlog.
    pub async fn delete_alerts_before(
        &self,
        cutoff: Millis,
        batch: i64,
    ) -> Result<usize, StoreError> {
        let done = [AlertState::Sent.as_str(), AlertState::Failed.as_str()];
        with_writer!(self, |conn| {
            let old = diesel::alias!(alerts as old_alerts);
            let doomed = old
                .select(old.field(alerts::id))
                .filter(old.field(alerts::state).eq_any(done))
                .filter(old.field(alerts::created_at).lt(cutoff))
                .limit(batch.max(0));
            Ok(diesel::delete(alerts::table)
                .filter(alerts::id.eq_any(doomed))
                .execute(conn)
                .await?)
        })
    }
}
