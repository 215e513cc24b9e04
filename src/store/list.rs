//! `GET /services` in the database: a page of services in id order after a
//! cursor, narrowed by status, tag and name, every filter a SQL `WHERE`.
//!
//! A tag filter starts from `service_tags`, whose (tag, service_id) key
//! hands the tagged ids over in order, so a page costs its own rows whether
//! the tag is on ten services or on most of a million; the other filters
//! ride along on the same walk. A status filter walks `services_by_status`
//! (last_status, id) the same way, once per status asked for. A name search (`q`) is a `LIKE` on
//! `lower(name)`: SQLite's `lower` folds ASCII letters only, PostgreSQL's
//! every letter.

use super::models::ServiceRow;
use super::schema::{service_tags, services};
use super::{Backend, Store, StoreError};
use crate::domain::{Service, Status};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

diesel::define_sql_function! {
    /// SQL `lower(text)` (both backends spell it alike).
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Which services a page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFilter {
    /// Only services with a larger id (0: from the first).
    pub after: i64,
    /// Most services in the page (at least 1).
    pub limit: i64,
    /// Only services with one of these statuses (empty: any).
    pub statuses: Vec<Status>,
    /// Only services with this tag (exact, case-sensitive).
    pub tag: Option<String>,
    /// Only services whose name contains this, ignoring case.
    pub name_contains: Option<String>,
}

impl Default for ServiceFilter {
    fn default() -> Self {
        Self {
            after: 0,
            limit: 1000,
            statuses: Vec::new(),
            tag: None,
            name_contains: None,
        }
    }
}

/// A `LIKE` pattern matching names that contain `text` (lowercased, as the
/// column is): its own `%`, `_` and `\` escaped, so they match themselves.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Applies the status and name filters to a boxed query of either shape.
macro_rules! narrowed {
    ($query:expr, $statuses:expr, $pattern:expr) => {{
        let mut query = $query;
        if !$statuses.is_empty() {
            query = query.filter(services::last_status.eq_any($statuses.clone()));
        }
        if let Some(pattern) = $pattern {
            query = query.filter(lower(services::name).like(pattern.clone()).escape('\\'));
        }
        query
    }};
}

impl Store {
    /// The page of services `filter` describes, in id order.
    pub async fn list_services_page(
        &self,
        filter: &ServiceFilter,
    ) -> Result<Vec<Service>, StoreError> {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        let pattern = filter.name_contains.as_deref().map(contains_pattern);
        let (after, limit) = (filter.after, filter.limit.max(1));
        with_conn!(self, |conn| {
            let rows: Vec<ServiceRow> = match &filter.tag {
                Some(tag) => {
                    narrowed!(
                        services::table
                            .inner_join(service_tags::table)
                            .filter(service_tags::tag.eq(tag.clone()))
                            .filter(service_tags::service_id.gt(after))
                            .select(ServiceRow::as_select())
                            .order(service_tags::service_id.asc())
                            .limit(limit)
                            .into_boxed(),
                        statuses,
                        &pattern
                    )
                    .load(conn)
                    .await?
                }
                None if !statuses.is_empty() => {
                    // A walk of (last_status, id) per status, merged: with
                    // several in one `IN`, SQLite reads every matching row
                    // after the cursor and sorts them for each page, and
                    // PostgreSQL's `= ANY` cannot give them in id order.
                    let mut rows = Vec::new();
                    for status in &statuses {
                        let mut query = services::table
                            .filter(services::last_status.eq(*status))
                            .filter(services::id.gt(after))
                            .select(ServiceRow::as_select())
                            .order(services::id.asc())
                            .limit(limit)
                            .into_boxed();
                        if let Some(pattern) = &pattern {
                            query = query
                                .filter(lower(services::name).like(pattern.clone()).escape('\\'));
                        }
                        let one: Vec<ServiceRow> = query.load(conn).await?;
                        rows.extend(one);
                    }
                    rows.sort_unstable_by_key(|r: &ServiceRow| r.id);
                    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                    rows
                }
                None => {
                    narrowed!(
                        services::table
                            .filter(services::id.gt(after))
                            .select(ServiceRow::as_select())
                            .order(services::id.asc())
                            .limit(limit)
                            .into_boxed(),
                        statuses,
                        &pattern
                    )
                    .load(conn)
                    .await?
                }
            };
            Ok(rows.into_iter().map(ServiceRow::into_service).collect())
        })
    }
}

impl Store {
    /// Hands the page `filter` describes, in id order, to `show` as an
    /// iterator of services, and returns what `show` returns.
    ///
    /// `GET /services` writes its answer this way. On SQLite the rows are
    /// read, turned into services and shown one at a time on the blocking
    /// thread that runs the query, so a page of 1,000 is never held as rows
    /// or as services: [`Store::list_services_page`] costs one copy of
    /// every column value (diesel's async wrapper copies each row out of
    /// SQLite with `sqlite3_value_dup` before decoding it), then a vector of
    /// rows and one of services, which at 24 columns was most of the page's
    /// allocations. PostgreSQL's rows arrive whole anyway and are shown
    /// from [`Store::list_services_page`]'s vector.
    pub async fn with_services_page<R: Send + 'static>(
        &self,
        filter: &ServiceFilter,
        show: impl FnOnce(&mut dyn Iterator<Item = Service>) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        match &*self.backend {
            Backend::Sqlite(pools) => {
                let mut conn = pools.readers.get().await?;
                let filter = filter.clone();
                Ok(conn
                    .spawn_blocking(move |conn| blocking::page(conn, &filter, show))
                    .await?)
            }
            Backend::Postgres { .. } => {
                let services = self.list_services_page(filter).await?;
                Ok(show(&mut services.into_iter()))
            }
        }
    }
}

/// The SQLite page on a plain (blocking) connection: diesel's synchronous
/// API, kept apart from the async one, whose methods have the same names.
mod blocking {
    use super::{ServiceFilter, contains_pattern, lower};
    use crate::domain::Service;
    use crate::store::models::ServiceRow;
    use crate::store::schema::{service_tags, services};
    use diesel::connection::DefaultLoadingMode;
    use diesel::prelude::*;
    use diesel::sqlite::SqliteConnection;

    /// Services from rows as they are read; stops at the first failed row
    /// and keeps its error for [`page`] to return.
    struct Shown<I> {
        rows: I,
        failed: Option<diesel::result::Error>,
    }

    impl<I: Iterator<Item = QueryResult<ServiceRow>>> Iterator for Shown<I> {
        type Item = Service;

        fn next(&mut self) -> Option<Service> {
            if self.failed.is_some() {
                return None;
            }
            match self.rows.next()? {
                Ok(row) => Some(row.into_service()),
                Err(e) => {
                    self.failed = Some(e);
                    None
                }
            }
        }
    }

    /// Runs `show` over the page's services as the rows come.
    fn shown<R>(
        rows: impl Iterator<Item = QueryResult<ServiceRow>>,
        show: impl FnOnce(&mut dyn Iterator<Item = Service>) -> R,
    ) -> QueryResult<R> {
        let mut services = Shown { rows, failed: None };
        let out = show(&mut services);
        match services.failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The same queries as [`crate::store::Store::list_services_page`].
    pub(super) fn page<R>(
        conn: &mut SqliteConnection,
        filter: &ServiceFilter,
        show: impl FnOnce(&mut dyn Iterator<Item = Service>) -> R,
    ) -> QueryResult<R> {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        let pattern = filter.name_contains.as_deref().map(contains_pattern);
        let (after, limit) = (filter.after, filter.limit.max(1));
        match &filter.tag {
            Some(tag) => {
                let query = narrowed!(
                    services::table
                        .inner_join(service_tags::table)
                        .filter(service_tags::tag.eq(tag.clone()))
                        .filter(service_tags::service_id.gt(after))
                        .select(ServiceRow::as_select())
                        .order(service_tags::service_id.asc())
                        .limit(limit)
                        .into_boxed(),
                    statuses,
                    &pattern
                );
                shown(query.load_iter::<_, DefaultLoadingMode>(conn)?, show)
            }
            None if statuses.len() == 1 => {
                // One status, the common case: one walk of
                // `services_by_status`, shown as it is read. Collecting the
                // rows first (as several statuses must, to merge them) is a
                // 400 KB vector a page, and at 1,000,000 services such
                // blocks cost a CPU-millisecond a page in page faults and
                // took RSS from 110 to 270 MB with ten clients.
                let mut query = services::table
                    .filter(services::last_status.eq(statuses[0]))
                    .filter(services::id.gt(after))
                    .select(ServiceRow::as_select())
                    .order(services::id.asc())
                    .limit(limit)
                    .into_boxed();
                if let Some(pattern) = &pattern {
                    query = query.filter(lower(services::name).like(pattern.clone()).escape('\\'));
                }
                shown(query.load_iter::<_, DefaultLoadingMode>(conn)?, show)
            }
            None if !statuses.is_empty() => {
                // One walk per status, merged (see list_services_page).
                let mut rows = Vec::new();
                for status in &statuses {
                    let mut query = services::table
                        .filter(services::last_status.eq(*status))
                        .filter(services::id.gt(after))
                        .select(ServiceRow::as_select())
                        .order(services::id.asc())
                        .limit(limit)
                        .into_boxed();
                    if let Some(pattern) = &pattern {
                        query =
                            query.filter(lower(services::name).like(pattern.clone()).escape('\\'));
                    }
                    rows.extend(query.load::<ServiceRow>(conn)?);
                }
                rows.sort_unstable_by_key(|r: &ServiceRow| r.id);
                rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                shown(rows.into_iter().map(Ok), show)
            }
            None => {
                let query = narrowed!(
                    services::table
                        .filter(services::id.gt(after))
                        .select(ServiceRow::as_select())
                        .order(services::id.asc())
                        .limit(limit)
                        .into_boxed(),
                    statuses,
                    &pattern
                );
                shown(query.load_iter::<_, DefaultLoadingMode>(conn)?, show)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_the_search_match_themselves() {
        assert_eq!(contains_pattern("Api"), "%api%");
        assert_eq!(contains_pattern("50%_a\\b"), r"%50\%\_a\\b%");
        assert_eq!(contains_pattern("ÄPI"), "%äpi%");
    }
}
