//! Maintenance windows in the store.

use super::{Store, StoreError};
use crate::domain::ServiceId;
use crate::domain::time::Millis;

impl Store {
    /// The end of the maintenance window that covers `service` at `now`, if
    /// one does: alerts for it are held until then.
    // TODO(issue 13): windows are not stored yet; nothing is ever held.
    pub async fn maintenance_until(
        &self,
        service: ServiceId,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let _ = (service, now);
        Ok(None)
    }
}
