//! Push services' tokens in the store: only each token's hash
//! (`services.push_token_hash`, unique), never the token.

use super::models::{NewServiceRow, ServiceRow};
use super::schema::services;
use super::{Backend, Store, StoreError};
use crate::domain::time::Millis;
use crate::domain::{Service, ServiceId, ServiceSpec};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

impl Store {
    /// Registers a push service with its token's hash, in one insert: a
    /// push service never exists without a token.
    pub async fn create_push_service(
        &self,
        spec: &ServiceSpec,
        now: Millis,
        token_hash: &str,
    ) -> Result<Service, StoreError> {
        let row = NewServiceRow::new(spec, now);
        with_writer!(self, |conn| {
            let created: ServiceRow = diesel::insert_into(services::table)
                .values((&row, services::push_token_hash.eq(token_hash)))
                .returning(ServiceRow::as_returning())
                .get_result(conn)
                .await?;
            Ok(created.into_service())
        })
    }

    /// Replaces a service's token hash (the old token stops working with
    /// this write); the service as it is now, or `None` if there is none.
    pub async fn set_push_token(
        &self,
        id: ServiceId,
        token_hash: &str,
    ) -> Result<Option<Service>, StoreError> {
        let id = id.get();
        with_writer!(self, |conn| {
            let row: Option<ServiceRow> = diesel::update(services::table.find(id))
                .set(services::push_token_hash.eq(token_hash))
                .returning(ServiceRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            Ok(row.map(ServiceRow::into_service))
        })
    }

    /// The service whose token hashes to `token_hash`, if any.
    pub async fn service_by_push_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<Service>, StoreError> {
        with_conn!(self, |conn| {
            let row: Option<ServiceRow> = services::table
                .filter(services::push_token_hash.eq(token_hash))
                .select(ServiceRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.map(ServiceRow::into_service))
        })
    }
}
