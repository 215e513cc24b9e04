//! Alert channels in the store: created, listed, read, replaced and
//! deleted for the API. The settings are kept as the JSON the user sent,
//! secrets included; nothing here logs them.

use super::schema::{alerts, channels, services};
use super::{Backend, Store, StoreError};
use crate::domain::ChannelId;
use crate::domain::channel_spec::{ChannelSpec, StoredChannel};
use crate::domain::time::Millis;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::collections::HashSet;

/// What `last_error` says of an alert whose channel was deleted before it
/// was delivered.
pub const CHANNEL_DELETED: &str = "channel deleted";

/// A `channels` row. Its `Debug` leaves out `config`, which holds secrets.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = channels)]
struct ChannelRow {
    id: i64,
    name: String,
    kind: String,
    config: String,
    all_services: bool,
    remind_every_s: i64,
    created_at: i64,
    updated_at: i64,
}

// By hand: a derived one printed the raw settings, secrets included.
impl std::fmt::Debug for ChannelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("config", &"<not shown>")
            .field("all_services", &self.all_services)
            .field("remind_every_s", &self.remind_every_s)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl ChannelRow {
    /// A row whose settings are not a JSON object (edited by hand) reads
    /// with none, and so shows as unusable rather than failing a listing.
    fn into_channel(self) -> StoredChannel {
        let config = match serde_json::from_str(&self.config) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        StoredChannel {
            id: ChannelId(self.id),
            spec: ChannelSpec {
                name: self.name,
                kind: self.kind,
                config,
                all_services: self.all_services,
                remind_every_s: self.remind_every_s,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The `channels` columns a write sets.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = channels)]
struct ChannelChanges<'a> {
    name: &'a str,
    kind: &'a str,
    config: String,
    all_services: bool,
    remind_every_s: i64,
    updated_at: i64,
}

impl<'a> ChannelChanges<'a> {
    fn new(spec: &'a ChannelSpec, now: Millis) -> Self {
        ChannelChanges {
            name: &spec.name,
            kind: &spec.kind,
            config: serde_json::Value::Object(spec.config.clone()).to_string(),
            all_services: spec.all_services,
            remind_every_s: spec.remind_every_s,
            updated_at: now,
        }
    }
}

/// The outcome of a channel write.
#[derive(Debug)]
pub enum ChannelSaved {
    /// Written; the channel as it is now.
    Saved(StoredChannel),
    /// Another channel has this name.
    NameTaken,
    /// No such channel.
    NotFound,
    /// The channel changed since the version the caller read.
    Conflict,
}

fn name_taken(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

impl Store {
    /// Those of `ids` that name no channel, in the order given: a service
    /// may only list channels that exist.
    pub async fn unknown_channels(&self, ids: &[ChannelId]) -> Result<Vec<ChannelId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let found: HashSet<i64> = with_conn!(self, |conn| {
            channels::table
                .filter(channels::id.eq_any(&wanted))
                .select(channels::id)
                .load::<i64>(conn)
                .await?
        })
        .into_iter()
        .collect();
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !found.contains(&id.get()))
            .collect())
    }

    /// Number of channels, for the API's limit on them.
    pub async fn count_channels(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| {
            Ok(channels::table.count().get_result(conn).await?)
        })
    }

    /// Stores a new channel.
    pub async fn create_channel(
        &self,
        spec: &ChannelSpec,
        now: Millis,
    ) -> Result<ChannelSaved, StoreError> {
        let row = ChannelChanges::new(spec, now);
        with_writer!(self, |conn| {
            let created = diesel::insert_into(channels::table)
                .values((&row, channels::created_at.eq(now)))
                .returning(ChannelRow::as_returning())
                .get_result(conn)
                .await;
            match created {
                Ok(row) => Ok(ChannelSaved::Saved(row.into_channel())),
                Err(e) if name_taken(&e) => Ok(ChannelSaved::NameTaken),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// At most `limit` channels with ids above `after`, by id.
    pub async fn list_channels(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredChannel>, StoreError> {
        with_conn!(self, |conn| {
            let rows: Vec<ChannelRow> = channels::table
                .filter(channels::id.gt(after))
                .select(ChannelRow::as_select())
                .order(channels::id.asc())
                .limit(limit.max(1))
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(ChannelRow::into_channel).collect())
        })
    }

    /// One channel, secrets included (for the sender and for keeping
    /// secrets a client sent back as `***`).
    pub async fn get_channel(&self, id: ChannelId) -> Result<Option<StoredChannel>, StoreError> {
        let id = id.get();
        with_conn!(self, |conn| {
            let row: Option<ChannelRow> = channels::table
                .find(id)
                .select(ChannelRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.map(ChannelRow::into_channel))
        })
    }

    /// Replaces a channel's settings if it is still as the caller read it
    /// (`updated_at` is its version: each write moves it strictly forward,
    /// so a read-merge-write cannot undo a write it did not see).
    pub async fn update_channel(
        &self,
        id: ChannelId,
        spec: &ChannelSpec,
        read_at: Millis,
        now: Millis,
    ) -> Result<ChannelSaved, StoreError> {
        let id = id.get();
        let changes = ChannelChanges::new(spec, now.max(read_at + 1));
        with_writer!(self, |conn| {
            let updated = diesel::update(
                channels::table
                    .find(id)
                    .filter(channels::updated_at.eq(read_at)),
            )
            .set(&changes)
            .returning(ChannelRow::as_returning())
            .get_result(conn)
            .await
            .optional();
            match updated {
                Ok(Some(row)) => return Ok(ChannelSaved::Saved(row.into_channel())),
                Ok(None) => {}
                Err(e) if name_taken(&e) => return Ok(ChannelSaved::NameTaken),
                Err(e) => return Err(e.into()),
            }
            let exists: Option<i64> = channels::table
                .find(id)
                .select(channels::id)
                .first(conn)
                .await
                .optional()?;
            Ok(if exists.is_some() {
                ChannelSaved::Conflict
            } else {
                ChannelSaved::NotFound
            })
        })
    }

    /// Deletes a channel; `false` if there was none. Its undelivered alerts
    /// are marked failed ("channel deleted") and services stop listing it,
    /// in the same transaction, so no sender picks up an alert for a
    /// channel that is gone and a service read back and sent again is not
    /// refused for naming it.
    pub async fn delete_channel(&self, id: ChannelId, now: Millis) -> Result<bool, StoreError> {
        let id = id.get();
        with_writer!(self, |conn| {
            let deleted = conn
                .transaction::<_, DieselError, _>(async |conn| {
                    diesel::update(
                        alerts::table
                            .filter(alerts::channel_id.eq(id))
                            .filter(alerts::state.eq("pending")),
                    )
                    .set((
                        alerts::state.eq("failed"),
                        alerts::last_error.eq(CHANNEL_DELETED),
                        alerts::next_attempt_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
                    // channel_ids is a compact JSON array of ids ("[1,22]"):
                    // these patterns match the id as a whole element (not 2
                    // inside 22), among the services listing any channel
                    // (the services_with_channels index), and the parse
                    // below decides.
                    let listing: Vec<(i64, Option<String>)> = services::table
                        .filter(services::channel_ids.is_not_null())
                        .filter(
                            services::channel_ids
                                .like(format!("[{id}]"))
                                .or(services::channel_ids.like(format!("[{id},%")))
                                .or(services::channel_ids.like(format!("%,{id},%")))
                                .or(services::channel_ids.like(format!("%,{id}]"))),
                        )
                        .select((services::id, services::channel_ids))
                        .load(conn)
                        .await?;
                    for (service, ids) in listing {
                        let Some(list) = ids
                            .as_deref()
                            .and_then(|s| serde_json::from_str::<Vec<i64>>(s).ok())
                        else {
                            continue;
                        };
                        if !list.contains(&id) {
                            continue;
                        }
                        let kept: Vec<i64> = list.into_iter().filter(|c| *c != id).collect();
                        let kept =
                            (!kept.is_empty()).then(|| serde_json::Value::from(kept).to_string());
                        // The version moves, so a PATCH that read the old
                        // list retries instead of writing it back.
                        diesel::update(services::table.find(service))
                            .set((
                                services::channel_ids.eq(kept),
                                services::version.eq(services::version + 1),
                            ))
                            .execute(conn)
                            .await?;
                    }
                    diesel::delete(channels::table.find(id)).execute(conn).await
                })
                .await?;
            Ok(deleted > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debug_print_of_a_row_holds_no_setting() {
        let row = ChannelRow {
            id: 1,
            name: "ops".into(),
            kind: "pagerduty".into(),
            config: r#"{"routing_key":"R0UT1NG"}"#.into(),
            all_services: false,
            remind_every_s: 0,
            created_at: 0,
            updated_at: 0,
        };
        let printed = format!("{row:?}");
        assert!(!printed.contains("R0UT1NG"), "{printed}");
        assert!(printed.contains("pagerduty"), "{printed}");
    }
}
