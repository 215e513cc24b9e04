//! Maintenance windows in the store.
//!
//! Windows are few (at most [`MAX_WINDOWS`]), so questions about them ("is
//! this service in maintenance now?") read them all and answer in memory.
//! Nothing is cached: a window created or deleted by another process counts
//! at the next question.

use super::schema::{maintenance_windows, service_tags, services};
use super::{Backend, Store, StoreError};
use crate::domain::ServiceId;
use crate::domain::time::Millis;
use crate::domain::window::{Recurrence, Schedule, Scope, Window, WindowSpec};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::{HashMap, HashSet};

/// Most windows that may exist: every alert delivery reads those open now,
/// so their number must stay small.
pub const MAX_WINDOWS: i64 = 1000;

/// A `maintenance_windows` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = maintenance_windows)]
struct WindowRow {
    id: i64,
    name: String,
    service_ids: Option<String>,
    tag: Option<String>,
    start_at: Option<i64>,
    end_at: Option<i64>,
    cron: Option<String>,
    duration_s: Option<i64>,
    timezone: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// The columns a client sets.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = maintenance_windows, treat_none_as_null = true)]
struct WindowColumns {
    name: String,
    service_ids: Option<String>,
    tag: Option<String>,
    start_at: Option<i64>,
    end_at: Option<i64>,
    cron: Option<String>,
    duration_s: Option<i64>,
    timezone: Option<String>,
    updated_at: i64,
}

impl WindowColumns {
    fn new(spec: &WindowSpec, now: Millis) -> Self {
        let service_ids = match &spec.scope {
            Scope::All => None,
            Scope::Services(ids) => Some(
                serde_json::Value::from(ids.iter().map(|id| id.get()).collect::<Vec<_>>())
                    .to_string(),
            ),
        };
        let mut row = Self {
            name: spec.name.clone(),
            service_ids,
            tag: spec.tag.clone(),
            start_at: None,
            end_at: None,
            cron: None,
            duration_s: None,
            timezone: None,
            updated_at: now,
        };
        match &spec.schedule {
            Schedule::Once { start, end } => {
                row.start_at = Some(*start);
                row.end_at = Some(*end);
            }
            Schedule::Recurring(r) => {
                row.cron = Some(r.pattern().to_owned());
                row.duration_s = Some(r.duration_s());
                row.timezone = Some(r.zone().to_owned());
            }
        }
        row
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = maintenance_windows)]
struct NewWindowRow {
    #[diesel(embed)]
    columns: WindowColumns,
    created_at: i64,
}

impl WindowRow {
    /// The window, or why the row cannot be one (only a row edited by hand
    /// can be unreadable: the API stores validated windows only).
    fn into_window(self) -> Result<Window, String> {
        let scope = match self.service_ids.as_deref() {
            None => Scope::All,
            Some(text) => Scope::Services(
                serde_json::from_str::<Vec<i64>>(text)
                    .map_err(|e| format!("service_ids {text:?}: {e}"))?
                    .into_iter()
                    .map(ServiceId)
                    .collect(),
            ),
        };
        let schedule = match (self.start_at, self.end_at, self.cron.as_deref()) {
            (Some(start), Some(end), None) if start < end => Schedule::Once { start, end },
            (None, None, Some(cron)) => {
                let zone = self
                    .timezone
                    .as_deref()
                    .unwrap_or(crate::domain::window::DEFAULT_ZONE);
                let duration = self.duration_s.unwrap_or_default();
                Schedule::Recurring(Box::new(
                    Recurrence::new(cron, duration, zone)
                        .map_err(|e| format!("{}: {}", e.field, e.message))?,
                ))
            }
            _ => return Err("neither a one-off nor a recurring window".into()),
        };
        if scope == Scope::Services(Vec::new()) && self.tag.is_none() {
            return Err("no service ids and no tag".into());
        }
        Ok(Window {
            id: self.id,
            spec: WindowSpec {
                name: self.name,
                scope,
                tag: self.tag,
                schedule,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Rows to windows, leaving out (with a warning) any that is unreadable, so
/// one bad row neither hides the others nor fails every alert.
fn readable(rows: Vec<WindowRow>) -> Vec<Window> {
    rows.into_iter()
        .filter_map(|row| {
            let id = row.id;
            row.into_window()
                .map_err(|error| {
                    tracing::warn!(window_id = id, %error, "unreadable maintenance window skipped");
                })
                .ok()
        })
        .collect()
}

/// The outcome of [`Store::update_window`].
#[derive(Debug)]
pub enum WindowUpdate {
    /// Written; the window as it is now.
    Saved(Window),
    /// No such window.
    NotFound,
    /// The window changed since the version the caller read.
    Conflict,
}

impl Store {
    /// Stores a new window.
    pub async fn create_window(
        &self,
        spec: &WindowSpec,
        now: Millis,
    ) -> Result<Window, StoreError> {
        let row = NewWindowRow {
            columns: WindowColumns::new(spec, now),
            created_at: now,
        };
        let created: WindowRow = with_writer!(self, |conn| {
            diesel::insert_into(maintenance_windows::table)
                .values(&row)
                .returning(WindowRow::as_returning())
                .get_result(conn)
                .await?
        });
        stored(created)
    }

    /// Number of windows stored.
    pub async fn count_windows(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| {
            Ok(maintenance_windows::table.count().get_result(conn).await?)
        })
    }

    /// At most `limit` windows with ids above `after`, by id.
    pub async fn windows_after(&self, after: i64, limit: i64) -> Result<Vec<Window>, StoreError> {
        let rows: Vec<WindowRow> = with_conn!(self, |conn| {
            maintenance_windows::table
                .filter(maintenance_windows::id.gt(after))
                .select(WindowRow::as_select())
                .order(maintenance_windows::id.asc())
                .limit(limit.max(1))
                .load(conn)
                .await?
        });
        Ok(readable(rows))
    }

    /// One window.
    pub async fn get_window(&self, id: i64) -> Result<Option<Window>, StoreError> {
        let row: Option<WindowRow> = with_conn!(self, |conn| {
            maintenance_windows::table
                .find(id)
                .select(WindowRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        row.map(stored).transpose()
    }

    /// Replaces a window's settings if it is still as last read
    /// (`if_updated_at`): a compare-and-set for read-modify-write. Each write
    /// moves `updated_at` forward by at least 1 ms, so it works as a version.
    pub async fn update_window(
        &self,
        id: i64,
        spec: &WindowSpec,
        now: Millis,
        if_updated_at: Millis,
    ) -> Result<WindowUpdate, StoreError> {
        let changes = WindowColumns::new(spec, now.max(if_updated_at + 1));
        let row: Option<WindowRow> = with_writer!(self, |conn| {
            diesel::update(
                maintenance_windows::table
                    .find(id)
                    .filter(maintenance_windows::updated_at.eq(if_updated_at)),
            )
            .set(&changes)
            .returning(WindowRow::as_returning())
            .get_result(conn)
            .await
            .optional()?
        });
        if let Some(row) = row {
            // It may have ended early or stopped covering a service.
            self.release_held(now).await?;
            return Ok(WindowUpdate::Saved(stored(row)?));
        }
        let exists: Option<i64> = with_conn!(self, |conn| {
            maintenance_windows::table
                .find(id)
                .select(maintenance_windows::id)
                .first(conn)
                .await
                .optional()?
        });
        Ok(if exists.is_some() {
            WindowUpdate::Conflict
        } else {
            WindowUpdate::NotFound
        })
    }

    /// Deletes a window; false if it did not exist. Alerts it held are
    /// looked at again at once (sent if no other window holds them).
    pub async fn delete_window(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = with_writer!(self, |conn| {
            diesel::delete(maintenance_windows::table.find(id))
                .execute(conn)
                .await?
        });
        if deleted > 0 {
            self.release_held(crate::domain::time::now_ms()).await?;
        }
        Ok(deleted > 0)
    }

    /// Those of `ids` that name no service, in the order given: a window
    /// may only list services that exist.
    pub async fn unknown_services(&self, ids: &[ServiceId]) -> Result<Vec<ServiceId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let found: HashSet<i64> = with_conn!(self, |conn| {
            services::table
                .filter(services::id.eq_any(&wanted))
                .select(services::id)
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

    /// The windows that may be open at `now`: every recurring one, and the
    /// one-off ones whose span holds `now` (the store filters those).
    async fn windows_maybe_open(&self, now: Millis) -> Result<Vec<Window>, StoreError> {
        let rows: Vec<WindowRow> = with_conn!(self, |conn| {
            maintenance_windows::table
                .filter(
                    maintenance_windows::cron
                        .is_not_null()
                        .or(maintenance_windows::start_at
                            .le(now)
                            .and(maintenance_windows::end_at.gt(now))),
                )
                .select(WindowRow::as_select())
                .order(maintenance_windows::id.asc())
                .limit(MAX_WINDOWS)
                .load(conn)
                .await?
        });
        Ok(readable(rows))
    }

    /// What is open at `now`: each open window's scope and when it closes,
    /// and who carries the tags of those that name one. Tags are read as
    /// they are now, so a service tagged after its window was made is
    /// covered, and one untagged leaves it.
    pub async fn open_windows(&self, now: Millis) -> Result<OpenWindows, StoreError> {
        let open: Vec<OpenWindow> = self
            .windows_maybe_open(now)
            .await?
            .into_iter()
            .filter_map(|w| {
                Some(OpenWindow {
                    until: w.spec.schedule.active_until(now)?,
                    scope: w.spec.scope,
                    tag: w.spec.tag,
                })
            })
            .collect();
        let mut tags: Vec<String> = open.iter().filter_map(|w| w.tag.clone()).collect();
        tags.sort();
        tags.dedup();
        let mut tagged: HashMap<String, HashSet<ServiceId>> = HashMap::new();
        if !tags.is_empty() {
            // One read for every open tag window; only open windows' tags
            // are looked up, so this costs nothing while none is open.
            let rows: Vec<(String, i64)> = with_conn!(self, |conn| {
                service_tags::table
                    .filter(service_tags::tag.eq_any(&tags))
                    .select((service_tags::tag, service_tags::service_id))
                    .load(conn)
                    .await?
            });
            for (tag, id) in rows {
                tagged.entry(tag).or_default().insert(ServiceId(id));
            }
        }
        Ok(OpenWindows { open, tagged })
    }

    /// The end of the maintenance window that covers `service` at `now`, if
    /// one does: alerts for it are held until then. When several overlap,
    /// the latest end.
    pub async fn maintenance_until(
        &self,
        service: ServiceId,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        Ok(self.open_windows(now).await?.until(service))
    }
}

/// The windows open at one moment, for asking about many services with one
/// read of the store ([`Store::open_windows`]).
#[derive(Debug, Default)]
pub struct OpenWindows {
    open: Vec<OpenWindow>,
    /// The services carrying each tag an open window names.
    tagged: HashMap<String, HashSet<ServiceId>>,
}

/// One open window, as far as coverage goes.
#[derive(Debug)]
struct OpenWindow {
    scope: Scope,
    tag: Option<String>,
    /// When it closes.
    until: Millis,
}

impl OpenWindows {
    /// When the last open window that covers `service` closes, if any does.
    pub fn until(&self, service: ServiceId) -> Option<Millis> {
        self.open
            .iter()
            .filter(|w| {
                w.scope.covers(service)
                    || w.tag.as_ref().is_some_and(|tag| {
                        self.tagged
                            .get(tag)
                            .is_some_and(|ids| ids.contains(&service))
                    })
            })
            .map(|w| w.until)
            .max()
    }

    /// Whether `service` is in maintenance.
    pub fn covers(&self, service: ServiceId) -> bool {
        self.until(service).is_some()
    }
}

/// A row the API itself just wrote or asked for by id: unreadable only if
/// edited by hand, which is the store's fault, not the client's.
fn stored(row: WindowRow) -> Result<Window, StoreError> {
    let id = row.id;
    row.into_window().map_err(|e| {
        StoreError::Query(diesel::result::Error::DeserializationError(
            format!("maintenance window {id}: {e}").into(),
        ))
    })
}
