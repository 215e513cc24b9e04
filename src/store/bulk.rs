//! Registering many services at once (`POST /services/bulk`): every row in
//! one transaction, so a batch is stored whole or not at all, and a bulk
//! import of a thousand services costs one commit instead of a thousand.

use super::models::{NewServiceRow, ServiceRow};
use super::schema::services;
use super::{Backend, Store, StoreError};
use crate::domain::time::Millis;
use crate::domain::{Service, ServiceSpec};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// One service of a batch: its settings and, for a push service, its
/// token's hash (stored in the same insert, as
/// [`Store::create_push_service`] does).
#[derive(Debug, Clone, Copy)]
pub struct NewService<'a> {
    /// The validated settings.
    pub spec: &'a ServiceSpec,
    /// The push token's hash; `None` for every other kind.
    pub push_token_hash: Option<&'a str>,
}

impl Store {
    /// Registers every service of `batch` in one transaction, in order; all
    /// start PENDING. On an error nothing is stored.
    pub async fn create_services(
        &self,
        batch: &[NewService<'_>],
        now: Millis,
    ) -> Result<Vec<Service>, StoreError> {
        let rows: Vec<(NewServiceRow<'_>, Option<&str>)> = batch
            .iter()
            .map(|s| (NewServiceRow::new(s.spec, now), s.push_token_hash))
            .collect();
        with_writer!(self, |conn| {
            // One insert per row, inside the transaction: the rows differ in
            // which columns they set (a token hash or not), and a statement
            // of 1,000 rows x 17 columns would pass SQLite's bound-parameter
            // limit on older builds. Prepared once, each costs microseconds.
            let created = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    let mut created = Vec::with_capacity(rows.len());
                    for (row, hash) in &rows {
                        let saved: ServiceRow = diesel::insert_into(services::table)
                            .values((row, services::push_token_hash.eq(*hash)))
                            .returning(ServiceRow::as_returning())
                            .get_result(conn)
                            .await?;
                        created.push(saved);
                    }
                    Ok(created)
                })
                .await?;
            Ok(created.into_iter().map(ServiceRow::into_service).collect())
        })
    }
}
