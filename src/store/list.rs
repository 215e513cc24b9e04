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
