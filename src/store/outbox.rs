//! The alert sender's side of the outbox: due alerts in, delivery outcomes
//! out, reminders written. Only one sender runs per fleet (an advisory
//! lock), so a claim is a plain read: no row locks.

use super::schema::{alerts, channels, services, state_changes};
use super::{Backend, Store, StoreError};
use crate::domain::time::Millis;
use crate::domain::{ChannelId, ServiceId};
use diesel::dsl::{self, count, max, min};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{
    AsChangeset, IntoUpdateTarget, QueryFragment, QueryId, UpdateStatement,
};
use diesel::sqlite::Sqlite;
use diesel_async::RunQueryDsl;

/// A pending outbox row, as the sender reads it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct OutboxRow {
    /// The delivery id.
    pub id: i64,
    /// The service; `None` for a channel test.
    pub service_id: Option<i64>,
    /// Where it goes.
    pub channel_id: i64,
    /// `down`, `up`, `reminder`, ...
    pub event: String,
    /// Status before the change.
    pub old_status: String,
    /// Status after it.
    pub new_status: String,
    /// Due time of the deciding check (of a reminder: its slot).
    pub scheduled_at: i64,
    /// [`crate::domain::outbox::AlertPayload`] as JSON.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// Why the last attempt failed, or why it is held.
    pub last_error: Option<String>,
    /// When it was written.
    pub created_at: i64,
    /// When it may next be tried.
    pub next_attempt_at: i64,
    /// Set once a maintenance window has held it: that window's end as
    /// last seen.
    pub held_until: Option<i64>,
    /// When delivery was first tried (`alerts.max_age_s` counts from here).
    pub first_attempt_at: Option<i64>,
    /// The storm group it went out in (its lowest member's id); a retry
    /// resends the same set.
    pub group_id: Option<i64>,
}

impl OutboxRow {
    /// The service, if the alert is about one.
    pub fn service(&self) -> Option<ServiceId> {
        self.service_id.map(ServiceId)
    }

    /// The channel.
    pub fn channel(&self) -> ChannelId {
        ChannelId(self.channel_id)
    }
}

/// A channel as the sender needs it. `config` holds secrets: never log it.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = channels)]
pub struct ChannelRecord {
    /// Its id.
    pub id: i64,
    /// Its kind (`webhook`, `slack`, ...).
    pub kind: String,
    /// Its settings as JSON, secrets included.
    pub config: String,
    /// Whether every service alerts it.
    pub all_services: bool,
    /// Seconds between reminders while a service is DOWN; 0 is never.
    pub remind_every_s: i64,
}

impl std::fmt::Debug for ChannelRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("remind_every_s", &self.remind_every_s)
            .finish_non_exhaustive()
    }
}

/// A service that is DOWN, for reminders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownService {
    /// Its id.
    pub id: ServiceId,
    /// Its name now.
    pub name: String,
    /// Its own channels (`channel_ids`), besides the `all_services` ones.
    pub channels: Vec<ChannelId>,
    /// When it went DOWN (its newest change to DOWN).
    pub down_since: Millis,
}

/// A new outbox row the sender writes (reminders).
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = alerts)]
pub struct NewOutboxRow {
    /// The service.
    pub service_id: Option<i64>,
    /// The channel.
    pub channel_id: i64,
    /// The event.
    pub event: String,
    /// Status before.
    pub old_status: String,
    /// Status after.
    pub new_status: String,
    /// What makes it unique with service, channel and event.
    pub scheduled_at: i64,
    /// The payload JSON.
    pub payload: String,
    /// `pending`.
    pub state: String,
    /// 0.
    pub attempts: i32,
    /// When written.
    pub created_at: i64,
    /// When due.
    pub next_attempt_at: i64,
    /// `None`: not tried yet.
    pub first_attempt_at: Option<i64>,
}

/// What an earlier alert of the same service and channel came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// The row's id.
    pub id: i64,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    /// Its last error.
    pub last_error: Option<String>,
    /// When it may next be tried.
    pub next_attempt_at: Millis,
    /// Whether a maintenance window held it.
    pub held: bool,
}

/// [`Earlier`]'s columns: id, state, last_error, next_attempt_at,
/// held_until.
type EarlierRow = (i64, String, Option<String>, i64, Option<i64>);

diesel::define_sql_function! {
    /// SQL COALESCE of two nullable BIGINTs (both backends spell it alike).
    fn coalesce(x: diesel::sql_types::Nullable<diesel::sql_types::BigInt>, y: diesel::sql_types::Nullable<diesel::sql_types::BigInt>) -> diesel::sql_types::Nullable<diesel::sql_types::BigInt>;
}

/// [`pending_due`]'s query.
type PendingDue = dsl::Filter<
    dsl::Filter<alerts::table, dsl::Eq<alerts::state, &'static str>>,
    dsl::LtEq<alerts::next_attempt_at, Millis>,
>;

/// The pending alerts due at `now`: what a sender pass may try.
fn pending_due(now: Millis) -> PendingDue {
    alerts::table
        .filter(alerts::state.eq("pending"))
        .filter(alerts::next_attempt_at.le(now))
}

/// [`pending_among`]'s query.
type PendingAmong<'a> = dsl::Filter<
    dsl::Filter<alerts::table, dsl::EqAny<alerts::id, &'a [i64]>>,
    dsl::Eq<alerts::state, &'static str>,
>;

/// The pending alerts among `ids`: only those may take a delivery's
/// outcome (one a channel deletion failed meanwhile stays failed).
fn pending_among(ids: &[i64]) -> PendingAmong<'_> {
    alerts::table
        .filter(alerts::id.eq_any(ids))
        .filter(alerts::state.eq("pending"))
}

/// An update of the pending alerts among some ids ([`pending_among`])
/// setting `V`.
type PendingUpdate<'a, V> = UpdateStatement<
    alerts::table,
    <PendingAmong<'a> as IntoUpdateTarget>::WhereClause,
    <V as AsChangeset>::Changeset,
>;

impl Store {
    /// Sets `changes` on the pending alerts among `ids`: the one shape of
    /// every outcome the sender records.
    async fn update_pending<'a, V>(&self, ids: &'a [i64], changes: V) -> Result<(), StoreError>
    where
        V: AsChangeset<Target = alerts::table>,
        PendingUpdate<'a, V>: QueryFragment<Sqlite> + QueryFragment<Pg> + QueryId + Send,
    {
        with_writer!(self, |conn| {
            diesel::update(pending_among(ids))
                .set(changes)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// The channels with alerts due at `now` (at most `limit`), the one
    /// whose oldest due alert is oldest first: a pass looks at each channel
    /// on its own, so one channel's backlog cannot fill every batch.
    pub async fn due_channels(&self, now: Millis, limit: i64) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64, Option<i64>)> = with_conn!(self, |conn| {
            pending_due(now)
                .group_by(alerts::channel_id)
                .select((alerts::channel_id, min(alerts::next_attempt_at)))
                .order(min(alerts::next_attempt_at).asc())
                .limit(limit.max(1))
                .load(conn)
                .await?
        });
        Ok(rows.into_iter().map(|(channel, _)| channel).collect())
    }

    /// At most `limit` pending alerts of `channel` due at `now`, oldest due
    /// first, leaving out those of `skip_services` and the ids in
    /// `skip_ids` (lanes with a delivery under way).
    pub async fn due_alerts_of(
        &self,
        channel: i64,
        now: Millis,
        skip_services: &[i64],
        skip_ids: &[i64],
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = pending_due(now)
                .filter(alerts::channel_id.eq(channel))
                .order((alerts::next_attempt_at.asc(), alerts::id.asc()))
                .limit(limit.max(1))
                .select(OutboxRow::as_select())
                .into_boxed();
            if !skip_services.is_empty() {
                query = query.filter(
                    alerts::service_id
                        .is_null()
                        .or(alerts::service_id.ne_all(skip_services)),
                );
            }
            if !skip_ids.is_empty() {
                query = query.filter(alerts::id.ne_all(skip_ids));
            }
            Ok(query.load(conn).await?)
        })
    }

    /// The services with these ids (a deleted one is missing), for a storm
    /// group's alerts in one read.
    pub async fn services_by_id(
        &self,
        ids: &[i64],
    ) -> Result<Vec<crate::domain::Service>, StoreError> {
        use super::models::ServiceRow;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_conn!(self, |conn| {
            let rows: Vec<ServiceRow> = services::table
                .filter(services::id.eq_any(ids))
                .select(ServiceRow::as_select())
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(ServiceRow::into_service).collect())
        })
    }

    /// The pending members of storm group `group` due at `now`.
    pub async fn due_group(&self, group: i64, now: Millis) -> Result<Vec<OutboxRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(pending_due(now)
                .filter(alerts::group_id.eq(group))
                .order(alerts::id.asc())
                .select(OutboxRow::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Makes these alerts one storm group, `group`, unless they are in one
    /// already.
    pub async fn alerts_group(&self, ids: &[i64], group: i64) -> Result<(), StoreError> {
        with_writer!(self, |conn| {
            diesel::update(
                alerts::table
                    .filter(alerts::id.eq_any(ids))
                    .filter(alerts::group_id.is_null()),
            )
            .set(alerts::group_id.eq(Some(group)))
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    /// Holds these alerts for a maintenance window ending at `end`, to be
    /// looked at again at `until` (no later than `end`), saying why.
    pub async fn alerts_hold(
        &self,
        ids: &[i64],
        end: Millis,
        until: Millis,
        why: &str,
    ) -> Result<(), StoreError> {
        self.update_pending(
            ids,
            (
                alerts::held_until.eq(Some(end)),
                alerts::next_attempt_at.eq(until),
                alerts::last_error.eq(Some(why)),
            ),
        )
        .await
    }

    /// Makes alerts held by a maintenance window due now, so the sender
    /// looks again: a window was changed or deleted, and may have ended
    /// early. Those still in a window are held again.
    pub async fn release_held(&self, now: Millis) -> Result<usize, StoreError> {
        with_writer!(self, |conn| {
            Ok(diesel::update(
                alerts::table
                    .filter(alerts::state.eq("pending"))
                    .filter(alerts::held_until.gt(now))
                    .filter(alerts::next_attempt_at.gt(now)),
            )
            .set(alerts::next_attempt_at.eq(now))
            .execute(conn)
            .await?)
        })
    }

    /// At most `limit` pending alerts due at `now`, oldest due first.
    pub async fn due_alerts(&self, now: Millis, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(pending_due(now)
                .order((alerts::next_attempt_at.asc(), alerts::id.asc()))
                .limit(limit.max(1))
                .select(OutboxRow::as_select())
                .load(conn)
                .await?)
        })
    }

    /// The channels with these ids (a deleted one is missing).
    pub async fn channels_by_id(&self, ids: &[i64]) -> Result<Vec<ChannelRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_conn!(self, |conn| {
            Ok(channels::table
                .filter(channels::id.eq_any(ids))
                .select(ChannelRecord::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Channels that want reminders.
    pub async fn reminder_channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        with_conn!(self, |conn| {
            Ok(channels::table
                .filter(channels::remind_every_s.gt(0))
                .order(channels::id.asc())
                .select(ChannelRecord::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Marks alerts delivered, one attempt more each (a grouped storm
    /// message delivers several at once). Only pending rows change: one a
    /// channel deletion failed meanwhile stays failed.
    pub async fn alerts_sent(&self, ids: &[i64], now: Millis) -> Result<(), StoreError> {
        self.update_pending(
            ids,
            (
                alerts::state.eq("sent"),
                alerts::sent_at.eq(Some(now)),
                alerts::first_attempt_at.eq(coalesce(alerts::first_attempt_at, Some(now))),
                alerts::attempts.eq(alerts::attempts + 1),
                alerts::last_error.eq(None::<String>),
            ),
        )
        .await
    }

    /// Records a failed attempt, made at `now`, of these alerts; they are
    /// tried again at `next_at`.
    pub async fn alerts_retry(
        &self,
        ids: &[i64],
        error: &str,
        now: Millis,
        next_at: Millis,
    ) -> Result<(), StoreError> {
        self.update_pending(
            ids,
            (
                alerts::attempts.eq(alerts::attempts + 1),
                alerts::last_error.eq(Some(error)),
                alerts::next_attempt_at.eq(next_at),
                alerts::first_attempt_at.eq(coalesce(alerts::first_attempt_at, Some(now))),
            ),
        )
        .await
    }

    /// Gives up on these alerts; `attempted` counts the attempt that made
    /// it final (false when none was made: a deleted channel, a hold).
    pub async fn alerts_failed(
        &self,
        ids: &[i64],
        error: &str,
        attempted: bool,
    ) -> Result<(), StoreError> {
        let add = i32::from(attempted);
        self.update_pending(
            ids,
            (
                alerts::state.eq("failed"),
                alerts::attempts.eq(alerts::attempts + add),
                alerts::last_error.eq(Some(error)),
            ),
        )
        .await
    }

    /// Puts alerts off until `until` without counting an attempt, saying
    /// why in `last_error` (a maintenance hold, waiting for an earlier
    /// alert, a storm's pause).
    pub async fn alerts_defer(
        &self,
        ids: &[i64],
        until: Millis,
        why: &str,
    ) -> Result<(), StoreError> {
        self.update_pending(
            ids,
            (
                alerts::next_attempt_at.eq(until),
                alerts::last_error.eq(Some(why)),
            ),
        )
        .await
    }

    /// Services with status change alerts (not tests, not reminders)
    /// written for `channel` since `since`, whatever became of them: the
    /// storm count (DESIGN: "more than N services ... change status").
    pub async fn channel_alerts_since(
        &self,
        channel: ChannelId,
        since: Millis,
    ) -> Result<i64, StoreError> {
        let channel = channel.get();
        with_conn!(self, |conn| {
            Ok(alerts::table
                .filter(alerts::channel_id.eq(channel))
                .filter(alerts::created_at.ge(since))
                .filter(alerts::event.ne_all(["test", "reminder"]))
                .select(count(alerts::service_id).aggregate_distinct())
                .get_result(conn)
                .await?)
        })
    }

    /// The newest alert of `event` for (service, channel) whose change came
    /// before (`later` false) or after (`later` true) `scheduled_at`.
    pub async fn neighbour_alert(
        &self,
        service: ServiceId,
        channel: ChannelId,
        event: &str,
        scheduled_at: Millis,
        later: bool,
    ) -> Result<Option<Earlier>, StoreError> {
        let (service, channel) = (service.get(), channel.get());
        let row: Option<EarlierRow> = with_conn!(self, |conn| {
            let query = alerts::table
                .filter(alerts::service_id.eq(service))
                .filter(alerts::channel_id.eq(channel))
                .filter(alerts::event.eq(event))
                .select((
                    alerts::id,
                    alerts::state,
                    alerts::last_error,
                    alerts::next_attempt_at,
                    alerts::held_until,
                ))
                .into_boxed();
            let query = if later {
                query
                    .filter(alerts::scheduled_at.gt(scheduled_at))
                    .order(alerts::scheduled_at.asc())
            } else {
                query
                    .filter(alerts::scheduled_at.lt(scheduled_at))
                    .order(alerts::scheduled_at.desc())
            };
            query.first(conn).await.optional()?
        });
        Ok(row.map(
            |(id, state, last_error, next_attempt_at, held_until)| Earlier {
                id,
                state,
                last_error,
                next_attempt_at,
                held: held_until.is_some(),
            },
        ))
    }

    /// At most `limit` DOWN services (not paused) with ids above `after`, by id, with
    /// when each went DOWN (those with no recorded change to DOWN left out).
    pub async fn down_services_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<DownService>, Option<i64>), StoreError> {
        let rows: Vec<(i64, String, Option<String>)> = with_conn!(self, |conn| {
            services::table
                .filter(services::last_status.eq("DOWN"))
                // A paused service is not checked: its DOWN is old news.
                .filter(services::paused.eq(false))
                .filter(services::id.gt(after))
                .order(services::id.asc())
                .limit(limit.max(1))
                .select((services::id, services::name, services::channel_ids))
                .load(conn)
                .await?
        });
        let last = rows.last().map(|r| r.0);
        if rows.is_empty() {
            return Ok((Vec::new(), None));
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let since: Vec<(i64, Option<i64>)> = with_conn!(self, |conn| {
            state_changes::table
                .filter(state_changes::service_id.eq_any(&ids))
                .filter(state_changes::new_status.eq("DOWN"))
                .group_by(state_changes::service_id)
                .select((state_changes::service_id, max(state_changes::changed_at)))
                .load(conn)
                .await?
        });
        let since: std::collections::HashMap<i64, i64> = since
            .into_iter()
            .filter_map(|(id, at)| at.map(|at| (id, at)))
            .collect();
        let services = rows
            .into_iter()
            .filter_map(|(id, name, channel_ids)| {
                let down_since = *since.get(&id)?;
                let channels = channel_ids
                    .as_deref()
                    .and_then(|text| serde_json::from_str::<Vec<i64>>(text).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(ChannelId)
                    .collect();
                Some(DownService {
                    id: ServiceId(id),
                    name,
                    channels,
                    down_since,
                })
            })
            .collect();
        Ok((services, last))
    }

    /// Writes outbox rows, skipping any already there (the unique key of
    /// service, channel, event and scheduled_at); how many were new. Up to
    /// a few hundred rows go in one transaction (one commit, not one per
    /// row: on SQLite each commit waits for the one writer).
    pub async fn insert_alerts(&self, rows: &[NewOutboxRow]) -> Result<usize, StoreError> {
        use diesel_async::AsyncConnection;
        let mut inserted = 0;
        for chunk in rows.chunks(200) {
            inserted += with_writer!(self, |conn| {
                conn.transaction::<usize, diesel::result::Error, _>(async |conn| {
                    let mut n = 0;
                    for row in chunk {
                        n += diesel::insert_into(alerts::table)
                            .values(row)
                            .on_conflict_do_nothing()
                            .execute(conn)
                            .await?;
                    }
                    Ok(n)
                })
                .await?
            });
        }
        Ok(inserted)
    }
}
