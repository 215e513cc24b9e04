//! Alert channels in the store.

use super::schema::channels;
use super::{Backend, Store, StoreError};
use crate::domain::ChannelId;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashSet;

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
}
