//! The in-memory store: fast, bounded, gone when the process exits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{
    Change, Creation, EventQuery, ExecutionQuery, Store, Transition, WATCH_CAPACITY, lease_until,
};
use crate::audit::{AuditEntry, AuditRecord, GENESIS_HASH};
use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, EventKind};
use crate::execution::{Execution, ExecutionId, ExecutionStatus, Lease, Snapshot};
use crate::json::Json;

/// An event without the fields its execution already holds.
#[derive(Debug)]
struct StoredEvent {
    id: Uuid,
    kind: EventKind,
    time: DateTime<Utc>,
    data: Json,
}

#[derive(Debug)]
struct Entry {
    execution: Execution,
    snapshots: Vec<Snapshot>,
    events: Vec<StoredEvent>,
}

impl Entry {
    fn push_events(&mut self, events: &[Arc<Event>]) {
        self.events.extend(events.iter().map(|e| StoredEvent {
            id: e.id,
            kind: e.kind,
            time: e.time,
            data: e.data.clone(),
        }));
    }

    fn event(&self, e: &StoredEvent) -> Event {
        Event {
            id: e.id,
            kind: e.kind,
            time: e.time,
            execution_id: self.execution.id,
            action: Arc::clone(&self.execution.action),
            data: e.data.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<ExecutionId, Entry>,
    /// Finished executions, oldest first: the eviction order.
    finished: VecDeque<ExecutionId>,
    audit: VecDeque<AuditEntry>,
    audit_seq: u64,
    last_hash: Option<String>,
}

/// Keeps everything in process memory, bounded by a capacity: when more
/// than `capacity` finished executions are held, the oldest finished ones
/// are evicted (with their snapshots, events and audit entries). Pending,
/// parked and running executions are never evicted.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    capacity: usize,
    changes: broadcast::Sender<Change>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store keeping up to 100,000 finished executions.
    pub fn new() -> Self {
        Self::with_capacity(100_000)
    }

    /// A store keeping up to `capacity` finished executions.
    pub fn with_capacity(capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(WATCH_CAPACITY);
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            changes,
        }
    }

    /// Number of executions held.
    pub fn len(&self) -> usize {
        self.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                "lock",
                "memory store poisoned by a panic",
            )
        })
    }

    fn announce(&self, id: ExecutionId, status: ExecutionStatus) {
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(Change { id, status });
        }
    }
}

impl Inner {
    /// Book-keeping after a write: finished executions queue for eviction,
    /// audit records join the chain.
    fn record(
        &mut self,
        id: ExecutionId,
        status: ExecutionStatus,
        audit: Option<&AuditRecord>,
        capacity: usize,
    ) {
        if status.is_terminal() {
            self.finished.push_back(id);
        }
        if let Some(record) = audit {
            self.audit_seq += 1;
            let prev = self.last_hash.as_deref().unwrap_or(GENESIS_HASH);
            let entry = AuditEntry::chain(self.audit_seq, record.clone(), prev);
            self.last_hash = Some(entry.hash.clone());
            self.audit.push_back(entry);
        }
        self.evict(capacity);
    }

    fn evict(&mut self, capacity: usize) {
        while self.finished.len() > capacity {
            let Some(id) = self.finished.pop_front() else {
                break;
            };
            self.entries.remove(&id);
        }
        while self.audit.len() > capacity {
            self.audit.pop_front();
        }
    }

    fn entry(&mut self, id: ExecutionId, op: &'static str) -> Result<&mut Entry, StoreError> {
        self.entries
            .get_mut(&id)
            .ok_or_else(|| StoreError::not_found(op, format!("execution {id} does not exist")))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, c: &Creation) -> Result<(), StoreError> {
        c.check()?;
        let id = c.execution.id;
        let mut inner = self.lock()?;
        if inner.entries.contains_key(&id) {
            return Err(StoreError::new(
                StoreErrorKind::AlreadyExists,
                "create",
                format!("execution {id} already exists"),
            ));
        }
        let mut entry = Entry {
            execution: c.execution.clone(),
            snapshots: Vec::new(),
            events: Vec::new(),
        };
        entry.push_events(&c.events);
        entry.snapshots.extend(c.snapshot.clone());
        inner.entries.insert(id, entry);
        inner.record(id, c.execution.status, c.audit.as_ref(), self.capacity);
        drop(inner);
        self.announce(id, c.execution.status);
        Ok(())
    }

    async fn transition(&self, t: &Transition) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let entry = inner.entry(t.id, "transition")?;
        // The clock is read only when a lease has to be checked.
        let now = if t.lease_owner.is_some() {
            Utc::now()
        } else {
            t.at
        };
        t.check(&entry.execution, now)?;
        t.apply_to(&mut entry.execution);
        if let Some(s) = &t.snapshot {
            entry.snapshots.push(s.clone());
        }
        entry.push_events(&t.events);
        inner.record(t.id, t.to, t.audit.as_ref(), self.capacity);
        drop(inner);
        self.announce(t.id, t.to);
        Ok(())
    }

    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        Ok(self.lock()?.entries.get(&id).map(|e| e.execution.clone()))
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, StoreError> {
        let inner = self.lock()?;
        let range = match query.before {
            Some(b) => inner.entries.range(..b),
            None => inner.entries.range(..),
        };
        Ok(range
            .rev()
            .map(|(_, e)| &e.execution)
            .filter(|e| query.matches(e))
            .take(query.effective_limit())
            .cloned()
            .collect())
    }

    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError> {
        Ok(self
            .lock()?
            .entries
            .get(&id)
            .map(|e| e.snapshots.clone())
            .unwrap_or_default())
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock()?;
        let limit = query.effective_limit();
        let mut out: Vec<Event> = match query.execution_id {
            Some(id) => inner
                .entries
                .get(&id)
                .map(|e| {
                    e.events
                        .iter()
                        .map(|s| e.event(s))
                        .filter(|ev| query.matches(ev))
                        .collect()
                })
                .unwrap_or_default(),
            None => inner
                .entries
                .values()
                .flat_map(|e| e.events.iter().map(move |s| e.event(s)))
                .filter(|ev| query.matches(ev))
                .collect(),
        };
        out.sort_by_key(|e| e.id);
        out.truncate(limit);
        Ok(out)
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .audit
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn claim(
        &self,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Execution>, StoreError> {
        let now = Utc::now();
        let until = lease_until(now, lease);
        let mut inner = self.lock()?;
        let mut claimed = Vec::new();
        for entry in inner.entries.values_mut() {
            if claimed.len() >= limit {
                break;
            }
            let e = &mut entry.execution;
            if e.status == status && e.lease.as_ref().is_none_or(|l| l.until <= now) {
                e.lease = Some(Lease {
                    owner: owner.to_owned(),
                    until,
                });
                claimed.push(e.clone());
            }
        }
        Ok(claimed)
    }

    async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut inner = self.lock()?;
        let e = &mut inner.entry(id, "renew_lease")?.execution;
        match &mut e.lease {
            Some(l) if l.owner == owner && l.until > now => {
                l.until = lease_until(now, lease);
                Ok(())
            }
            _ => Err(StoreError::conflict(
                "renew_lease",
                format!("lease on {id} is not held by `{owner}`"),
            )),
        }
    }

    async fn release_lease(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut inner = self.lock()?;
        let e = &mut inner.entry(id, "release_lease")?.execution;
        match &e.lease {
            Some(l) if l.owner == owner && l.until > now => {
                e.lease = None;
                Ok(())
            }
            _ => Err(StoreError::conflict(
                "release_lease",
                format!("lease on {id} is not held by `{owner}`"),
            )),
        }
    }

    fn watch(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}
