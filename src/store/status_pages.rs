//! Status pages in the store: `status_pages` and the services each lists
//! (`status_page_services`, in order). A service's deletion removes it from
//! every page by the foreign key's cascade, inside the deletion's own
//! transaction.

use super::schema::{services, status_page_services, status_pages};
use super::{Backend, Store, StoreError};
use crate::domain::ServiceId;
use crate::domain::status::Status;
use crate::domain::status_page::{DAY_MS, DayCount, PublicStatus, StatusPage, StatusPageSpec};
use crate::domain::time::Millis;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::collections::HashMap;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = status_pages)]
struct PageRow {
    id: i64,
    slug: String,
    title: String,
    created_at: i64,
    updated_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = status_pages)]
struct NewPageRow<'a> {
    slug: &'a str,
    title: &'a str,
    created_at: i64,
    updated_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = status_page_services)]
struct LinkRow {
    page_id: i64,
    service_id: i64,
    position: i32,
}

fn links(page_id: i64, services: &[ServiceId]) -> Vec<LinkRow> {
    services
        .iter()
        .zip(0..)
        .map(|(id, position)| LinkRow {
            page_id,
            service_id: id.get(),
            position,
        })
        .collect()
}

/// The outcome of a status page write.
#[derive(Debug)]
pub enum PageSaved {
    /// Written; the page as it is now.
    Saved(StatusPage),
    /// Another page has this slug.
    SlugTaken,
    /// A listed service does not exist (deleted since it was checked).
    UnknownService,
    /// No page with the slug written to.
    NotFound,
    /// The page changed since the version the caller read.
    Conflict,
}

/// What a page shows of one listed service: never its URL, which may name
/// an internal host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedService {
    /// Its id (badges are named by it).
    pub id: ServiceId,
    /// Its name.
    pub name: String,
    /// Its status as shown.
    pub status: PublicStatus,
    /// Latency of its last check.
    pub last_latency_ms: Option<i64>,
    /// When its last check finished.
    pub last_check: Option<Millis>,
}

#[derive(Debug, Queryable)]
struct ListedRow {
    id: i64,
    name: String,
    last_status: String,
    paused: bool,
    last_latency_ms: Option<i64>,
    last_check: Option<i64>,
}

impl From<ListedRow> for ListedService {
    fn from(r: ListedRow) -> Self {
        // An unreadable status (edited by hand) shows as PENDING, as in
        // every other view.
        let status = r.last_status.parse().unwrap_or(Status::Pending);
        Self {
            id: ServiceId(r.id),
            name: r.name,
            status: PublicStatus::of(status, r.paused),
            last_latency_ms: r.last_latency_ms,
            last_check: r.last_check,
        }
    }
}

#[derive(diesel::QueryableByName)]
struct DayRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    service_id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    day_start: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    checks: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    failures: i64,
}

/// Which services' days [`Store::day_counts`] sums.
#[derive(Debug, Clone, Copy)]
pub enum DaysOf {
    /// Every service a page lists (by page id).
    Page(i64),
    /// One service.
    Service(ServiceId),
}

/// An error of a write, as an outcome when it is the client's.
fn outcome(e: DieselError) -> Result<PageSaved, StoreError> {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            Ok(PageSaved::SlugTaken)
        }
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            Ok(PageSaved::UnknownService)
        }
        e => Err(StoreError::Query(e)),
    }
}

impl Store {
    /// Number of pages stored.
    pub async fn count_status_pages(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| {
            Ok(status_pages::table.count().get_result(conn).await?)
        })
    }

    /// Stores a new page and its list, in one transaction.
    pub async fn create_status_page(
        &self,
        spec: &StatusPageSpec,
        now: Millis,
    ) -> Result<PageSaved, StoreError> {
        let row = NewPageRow {
            slug: &spec.slug,
            title: &spec.title,
            created_at: now,
            updated_at: now,
        };
        let written = with_writer!(self, |conn| {
            conn.transaction::<_, DieselError, _>(async |conn| {
                let page: PageRow = diesel::insert_into(status_pages::table)
                    .values(&row)
                    .returning(PageRow::as_returning())
                    .get_result(conn)
                    .await?;
                // One row at a time: diesel has no multi-row insert for
                // SQLite here, and a page lists at most 500.
                for link in links(page.id, &spec.services) {
                    diesel::insert_into(status_page_services::table)
                        .values(&link)
                        .execute(conn)
                        .await?;
                }
                Ok(page)
            })
            .await
        });
        match written {
            Ok(page) => Ok(PageSaved::Saved(assemble(page, spec.services.clone()))),
            Err(e) => outcome(e),
        }
    }

    /// At most `limit` pages, by slug after `after`, with their lists.
    pub async fn status_pages_after(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StatusPage>, StoreError> {
        let rows: Vec<PageRow> = with_conn!(self, |conn| {
            status_pages::table
                .filter(status_pages::slug.gt(after))
                .select(PageRow::as_select())
                .order(status_pages::slug.asc())
                .limit(limit.max(1))
                .load(conn)
                .await?
        });
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let listed: Vec<(i64, i64)> = with_conn!(self, |conn| {
            status_page_services::table
                .filter(status_page_services::page_id.eq_any(&ids))
                .select((
                    status_page_services::page_id,
                    status_page_services::service_id,
                ))
                .order((
                    status_page_services::page_id.asc(),
                    status_page_services::position.asc(),
                ))
                .load(conn)
                .await?
        });
        let mut by_page: HashMap<i64, Vec<ServiceId>> = HashMap::new();
        for (page, service) in listed {
            by_page.entry(page).or_default().push(ServiceId(service));
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let mine = by_page.remove(&row.id).unwrap_or_default();
                assemble(row, mine)
            })
            .collect())
    }

    /// One page by slug, with its list.
    pub async fn get_status_page(&self, slug: &str) -> Result<Option<StatusPage>, StoreError> {
        let row: Option<PageRow> = with_conn!(self, |conn| {
            status_pages::table
                .filter(status_pages::slug.eq(slug))
                .select(PageRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        let Some(row) = row else {
            return Ok(None);
        };
        let services: Vec<i64> = with_conn!(self, |conn| {
            status_page_services::table
                .filter(status_page_services::page_id.eq(row.id))
                .select(status_page_services::service_id)
                .order(status_page_services::position.asc())
                .load(conn)
                .await?
        });
        Ok(Some(assemble(
            row,
            services.into_iter().map(ServiceId).collect(),
        )))
    }

    /// Replaces the page now at `slug` with `spec` (its slug may change) if
    /// it is still as last read (`if_updated_at`): a compare-and-set for
    /// read-modify-write. Each write moves `updated_at` forward by at least
    /// 1 ms, so it works as a version.
    pub async fn update_status_page(
        &self,
        slug: &str,
        spec: &StatusPageSpec,
        now: Millis,
        if_updated_at: Millis,
    ) -> Result<PageSaved, StoreError> {
        let updated_at = now.max(if_updated_at + 1);
        let written = with_writer!(self, |conn| {
            conn.transaction::<_, DieselError, _>(async |conn| {
                let page: Option<PageRow> = diesel::update(
                    status_pages::table
                        .filter(status_pages::slug.eq(slug))
                        .filter(status_pages::updated_at.eq(if_updated_at)),
                )
                .set((
                    status_pages::slug.eq(&spec.slug),
                    status_pages::title.eq(&spec.title),
                    status_pages::updated_at.eq(updated_at),
                ))
                .returning(PageRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
                let Some(page) = page else {
                    let exists: Option<i64> = status_pages::table
                        .filter(status_pages::slug.eq(slug))
                        .select(status_pages::id)
                        .first(conn)
                        .await
                        .optional()?;
                    return Ok(Err(exists.is_some()));
                };
                diesel::delete(
                    status_page_services::table.filter(status_page_services::page_id.eq(page.id)),
                )
                .execute(conn)
                .await?;
                // One row at a time: diesel has no multi-row insert for
                // SQLite here, and a page lists at most 500.
                for link in links(page.id, &spec.services) {
                    diesel::insert_into(status_page_services::table)
                        .values(&link)
                        .execute(conn)
                        .await?;
                }
                Ok(Ok(page))
            })
            .await
        });
        match written {
            Ok(Ok(page)) => Ok(PageSaved::Saved(assemble(page, spec.services.clone()))),
            Ok(Err(true)) => Ok(PageSaved::Conflict),
            Ok(Err(false)) => Ok(PageSaved::NotFound),
            Err(e) => outcome(e),
        }
    }

    /// Deletes a page (its list goes by the cascade); false if none had
    /// this slug.
    pub async fn delete_status_page(&self, slug: &str) -> Result<bool, StoreError> {
        let deleted = with_writer!(self, |conn| {
            diesel::delete(status_pages::table.filter(status_pages::slug.eq(slug)))
                .execute(conn)
                .await?
        });
        Ok(deleted > 0)
    }

    /// The services page `page_id` lists that exist, in its order, as the
    /// public sees them (one query: a consistent view).
    pub async fn listed_services(&self, page_id: i64) -> Result<Vec<ListedService>, StoreError> {
        let rows: Vec<ListedRow> = with_conn!(self, |conn| {
            status_page_services::table
                .inner_join(services::table)
                .filter(status_page_services::page_id.eq(page_id))
                .select((
                    services::id,
                    services::name,
                    services::last_status,
                    services::paused,
                    services::last_latency_ms,
                    services::last_check,
                ))
                .order(status_page_services::position.asc())
                .load(conn)
                .await?
        });
        Ok(rows.into_iter().map(ListedService::from).collect())
    }

    /// Checks per service and UTC day with `from <= hour_start < to`,
    /// summed from the hourly rollups in the store (a page of 500 services
    /// reads 90 rows each, not 2,160). Days without checks have no row.
    pub async fn day_counts(
        &self,
        of: DaysOf,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<DayCount>, StoreError> {
        // Only integers go into the text.
        let which = match of {
            DaysOf::Page(page) => format!(
                "service_id IN (SELECT service_id FROM status_page_services WHERE page_id = {page})"
            ),
            DaysOf::Service(id) => format!("service_id = {}", id.get()),
        };
        let sql = format!(
            "SELECT service_id, hour_start - hour_start % {DAY_MS} AS day_start, \
             CAST(SUM(checks) AS BIGINT) AS checks, CAST(SUM(failures) AS BIGINT) AS failures \
             FROM hourly_rollups WHERE {which} AND hour_start >= {from} AND hour_start < {to} \
             GROUP BY service_id, hour_start - hour_start % {DAY_MS}"
        );
        let rows: Vec<DayRow> = with_conn!(self, |conn| diesel::sql_query(&sql).load(conn).await?);
        Ok(rows
            .into_iter()
            .map(|r| DayCount {
                service_id: ServiceId(r.service_id),
                day_start: r.day_start,
                checks: r.checks,
                failures: r.failures,
            })
            .collect())
    }
}

fn assemble(row: PageRow, services: Vec<ServiceId>) -> StatusPage {
    StatusPage {
        id: row.id,
        spec: StatusPageSpec {
            slug: row.slug,
            title: row.title,
            services,
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}
