//! API keys in the store: created, listed, revoked and touched (the token
//! itself never reaches the store, only its hash).

use super::models::{ApiKeyRow, NewApiKeyRow};
use super::schema::api_keys;
use super::{Backend, Store, StoreError};
use crate::domain::api_key::{ApiKey, NewApiKey};
use crate::domain::time::Millis;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

impl Store {
    /// Stores a new API key; `false` if the name is taken.
    pub async fn create_key(&self, key: &NewApiKey<'_>) -> Result<bool, StoreError> {
        with_writer!(self, |conn| {
            let inserted = diesel::insert_into(api_keys::table)
                .values(NewApiKeyRow::from(key))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            Ok(inserted == 1)
        })
    }

    /// Every API key, by name.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        with_conn!(self, |conn| {
            let rows: Vec<ApiKeyRow> = api_keys::table
                .select(ApiKeyRow::as_select())
                .order(api_keys::name.asc())
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(ApiKey::from).collect())
        })
    }

    /// Deletes the key with this name; `false` if there was none.
    pub async fn revoke_key(&self, name: &str) -> Result<bool, StoreError> {
        with_writer!(self, |conn| {
            let n = diesel::delete(api_keys::table.filter(api_keys::name.eq(name)))
                .execute(conn)
                .await?;
            Ok(n > 0)
        })
    }

    /// Records that a key was used at `at`.
    pub async fn touch_key(&self, id: i64, at: Millis) -> Result<(), StoreError> {
        with_writer!(self, |conn| {
            diesel::update(api_keys::table.find(id))
                .set(api_keys::last_used_at.eq(Some(at)))
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}
