//! The memory store's outbox: notifications by id (ids are time-ordered,
//! so the map's order is the order they were written).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{StoreError, StoreErrorKind};
use crate::execution::Lease;
use crate::outbox::{DeliveryState, Notification, NotificationQuery};

#[derive(Debug, Default)]
pub(super) struct Outbox(Mutex<BTreeMap<uuid::Uuid, Notification>>);

impl Outbox {
    fn lock(
        &self,
        op: &'static str,
    ) -> Result<std::sync::MutexGuard<'_, BTreeMap<uuid::Uuid, Notification>>, StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError::new(StoreErrorKind::Other, op, "outbox lock poisoned"))
    }

    /// Adds `notifications` (called with the execution's shard locked, so
    /// they land with the change that caused them).
    pub(super) fn put(&self, notifications: &[Notification]) -> Result<(), StoreError> {
        if notifications.is_empty() {
            return Ok(());
        }
        let mut all = self.lock("outbox")?;
        for n in notifications {
            all.insert(n.id, n.clone());
        }
        Ok(())
    }

    pub(super) fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let until = crate::store::lease_until(now, lease);
        let mut all = self.lock("claim_notifications")?;
        Ok(all
            .values_mut()
            .filter(|n| n.claimable(now))
            .take(limit)
            .map(|n| {
                n.lease = Some(Lease {
                    owner: owner.to_owned(),
                    until,
                });
                n.clone()
            })
            .collect())
    }

    pub(super) fn finish(
        &self,
        next: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut all = self.lock("finish_notification")?;
        match all.get_mut(&next.id) {
            Some(n) if n.leased_to(owner, now) => {
                *n = Notification {
                    lease: None,
                    ..next.clone()
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub(super) fn list(&self, query: &NotificationQuery) -> Result<Vec<Notification>, StoreError> {
        let all = self.lock("notifications")?;
        Ok(all
            .values()
            .filter(|n| query.matches(n))
            .take(query.effective_limit())
            .cloned()
            .collect())
    }

    pub(super) fn retry(
        &self,
        id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        let mut all = self.lock("retry_notification")?;
        Ok(match all.get_mut(&id) {
            Some(n) if n.state == DeliveryState::Dead => {
                *n = n.revived(now);
                Some(n.clone())
            }
            _ => None,
        })
    }
}
