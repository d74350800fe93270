//! A store whose writes a test decides: for failing disks in tests, and
//! for measuring a governed call without its store's work. It also counts
//! the executions read, for tests that bound them.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::audit::AuditEntry;
use crate::error::StoreError;
use crate::event::Event;
use crate::execution::{Execution, ExecutionId, ExecutionStatus, Snapshot};
use crate::grant::Grant;
use crate::pause::Pause;
use crate::store::{Change, Creation, EventQuery, ExecutionQuery, Store, Transition};

/// A write on its way to the store.
#[derive(Debug, Clone, Copy)]
pub enum StoreWrite<'a> {
    /// A new execution.
    Create(&'a Creation),
    /// A change of one.
    Transition(&'a Transition),
}

type Intercept = dyn Fn(StoreWrite<'_>) -> Option<Result<(), StoreError>> + Send + Sync;

/// Reads from `inner`; each write goes to `intercept` first, which answers
/// it (`Some`: an error, or `Ok` for a write dropped) or passes it on to
/// `inner` (`None`).
pub struct InterceptWrites<S> {
    inner: S,
    intercept: Box<Intercept>,
    reads: std::sync::atomic::AtomicUsize,
}

impl<S: Store> InterceptWrites<S> {
    /// `inner` with its writes first offered to `intercept`.
    pub fn new(
        inner: S,
        intercept: impl Fn(StoreWrite<'_>) -> Option<Result<(), StoreError>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            intercept: Box::new(intercept),
            reads: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many executions were read one by one (`Store::execution`).
    pub fn execution_reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl<S: Store> Store for InterceptWrites<S> {
    async fn create(&self, c: &Creation) -> Result<(), StoreError> {
        match (self.intercept)(StoreWrite::Create(c)) {
            Some(answer) => answer,
            None => self.inner.create(c).await,
        }
    }
    async fn transition(&self, t: &Transition) -> Result<(), StoreError> {
        match (self.intercept)(StoreWrite::Transition(t)) {
            Some(answer) => answer,
            None => self.inner.transition(t).await,
        }
    }
    fn create_in_place(&self, c: &mut Creation) -> Option<Result<(), StoreError>> {
        (self.intercept)(StoreWrite::Create(c)).or_else(|| self.inner.create_in_place(c))
    }
    fn transition_in_place(&self, t: &mut Transition) -> Option<Result<(), StoreError>> {
        (self.intercept)(StoreWrite::Transition(t)).or_else(|| self.inner.transition_in_place(t))
    }
    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.execution(id).await
    }
    async fn executions(&self, q: &ExecutionQuery) -> Result<Vec<Execution>, StoreError> {
        self.inner.executions(q).await
    }
    async fn count_executions(&self, q: &ExecutionQuery) -> Result<u64, StoreError> {
        self.inner.count_executions(q).await
    }
    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError> {
        self.inner.snapshots(id).await
    }
    async fn events(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.inner.events(q).await
    }
    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_entries(after, limit).await
    }
    async fn claim(
        &self,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        self.inner.claim(status, owner, lease, limit, actions).await
    }
    async fn claim_abandoned(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        self.inner
            .claim_abandoned(owner, lease, limit, actions)
            .await
    }
    async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.inner.renew_lease(id, owner, lease).await
    }
    async fn release_lease(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError> {
        self.inner.release_lease(id, owner).await
    }
    fn watch(&self) -> broadcast::Receiver<Change> {
        self.inner.watch()
    }
    async fn put_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        self.inner.put_grant(grant).await
    }
    async fn grants(
        &self,
        action: &str,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        self.inner.grants(action, principal, now).await
    }
    async fn valid_grants(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Grant>, StoreError> {
        self.inner.valid_grants(now, limit).await
    }
    async fn remove_grant(&self, id: uuid::Uuid) -> Result<Option<Grant>, StoreError> {
        self.inner.remove_grant(id).await
    }
    async fn put_pause(&self, pause: &Pause) -> Result<(), StoreError> {
        self.inner.put_pause(pause).await
    }
    async fn remove_pause(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.remove_pause(key).await
    }
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.inner.pauses().await
    }
    async fn claim_notifications(
        &self,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<crate::Notification>, StoreError> {
        self.inner
            .claim_notifications(owner, now, lease, limit)
            .await
    }
    async fn finish_notification(
        &self,
        notification: &crate::Notification,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .finish_notification(notification, owner, now)
            .await
    }
    async fn notifications(
        &self,
        query: &crate::NotificationQuery,
    ) -> Result<Vec<crate::Notification>, StoreError> {
        self.inner.notifications(query).await
    }
    async fn retry_notification(
        &self,
        id: uuid::Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::Notification>, StoreError> {
        self.inner.retry_notification(id, now).await
    }
}
