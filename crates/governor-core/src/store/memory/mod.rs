//! The in-memory store: fast, bounded, gone when the process exits.

mod outbox;

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque, btree_map};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use smallvec::SmallVec;
use tokio::sync::broadcast;

use super::{
    Change, Creation, EventQuery, ExecutionQuery, Store, Transition, WATCH_CAPACITY, lease_until,
    put_back, take_some,
};
use crate::approval::ApprovalRequest;
use crate::audit::{AuditEntry, AuditRecord, chain_digest, hex};
use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, EventRecord};
use crate::execution::{
    Checkpoint, Execution, ExecutionId, ExecutionStatus, Failure, Lease, Snapshot,
};
use crate::grant::Grant;
use crate::json::Json;
use crate::outbox::{Notification, NotificationQuery};
use crate::pause::Pause;
use crate::principal::Principal;

use crate::ids::SHARDS;

/// A snapshot without its execution id.
#[derive(Debug)]
struct StoredSnapshot {
    checkpoint: Checkpoint,
    captured_at: DateTime<Utc>,
    state: Json,
}

impl StoredSnapshot {
    fn of(s: &Snapshot) -> Self {
        Self {
            checkpoint: s.checkpoint,
            captured_at: s.captured_at,
            state: s.state.clone(),
        }
    }
}

impl From<Snapshot> for StoredSnapshot {
    fn from(s: Snapshot) -> Self {
        Self {
            checkpoint: s.checkpoint,
            captured_at: s.captured_at,
            state: s.state,
        }
    }
}

/// Fields most executions never set, boxed to keep records small.
#[derive(Debug, Default, Clone)]
struct Rare {
    failure: Option<Failure>,
    approval: Option<ApprovalRequest>,
    lease: Option<Lease>,
}

/// [`crate::EVICTED_UNREAD_HASH`] as bytes.
const EVICTED_UNREAD: [u8; 32] = [0xff; 32];

/// Events a call's last step usually adds once its first write spilled
/// its events off the inline slots (see [`Entry::reserve_events`]).
const CLOSING_EVENTS: usize = 3;

/// A write's events and snapshot: copied from a shared write, moved out
/// of an in-place one (no reference counts touched, see
/// [`Store::transition_in_place`]).
enum Parts<'a> {
    Shared {
        events: &'a [EventRecord],
        snapshot: Option<&'a Snapshot>,
    },
    Taken {
        events: &'a mut Vec<EventRecord>,
        snapshot: &'a mut Option<Snapshot>,
    },
}

impl<'a> Parts<'a> {
    fn shared(events: &'a [EventRecord], snapshot: &'a Option<Snapshot>) -> Self {
        Parts::Shared {
            events,
            snapshot: snapshot.as_ref(),
        }
    }
}

thread_local! {
    /// The last execution this thread evicted: the thread's next create
    /// reuses its box, and drops what it held then, outside the lock.
    static EVICTED: std::cell::Cell<Option<Box<Entry>>> = const { std::cell::Cell::new(None) };
}

/// An execution as kept in memory.
#[derive(Debug)]
struct Entry {
    id: ExecutionId,
    action: Arc<str>,
    status: ExecutionStatus,
    principal: Arc<Principal>,
    inputs: Json,
    output: Option<Json>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    version: u64,
    rare: Option<Box<Rare>>,
    /// Inline for the usual two snapshots and four events of a
    /// straight-through call: one allocation per execution, not three.
    snapshots: SmallVec<[StoredSnapshot; 2]>,
    events: SmallVec<[EventRecord; 4]>,
}

impl Entry {
    /// `e`'s rarely set fields, boxed when it has any.
    fn rare_of(e: &Execution) -> Option<Box<Rare>> {
        (e.failure.is_some() || e.approval.is_some() || e.lease.is_some()).then(|| {
            Box::new(Rare {
                failure: e.failure.clone(),
                approval: e.approval.clone(),
                lease: e.lease.clone(),
            })
        })
    }

    fn new(e: &Execution) -> Self {
        let rare = Self::rare_of(e);
        Self {
            id: e.id,
            action: Arc::clone(&e.action),
            status: e.status,
            principal: Arc::clone(&e.principal),
            inputs: e.inputs.clone(),
            output: e.output.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
            finished_at: e.finished_at,
            version: e.version,
            rare,
            snapshots: SmallVec::new(),
            events: SmallVec::new(),
        }
    }

    /// Makes this entry (an evicted one, reused) hold `e` instead: field
    /// by field, so its lists keep their memory and nothing is built on
    /// the stack and copied in.
    fn reset(&mut self, e: &Execution) {
        self.id = e.id;
        self.action = Arc::clone(&e.action);
        self.status = e.status;
        self.principal = Arc::clone(&e.principal);
        self.inputs = e.inputs.clone();
        self.output = e.output.clone();
        self.created_at = e.created_at;
        self.updated_at = e.updated_at;
        self.finished_at = e.finished_at;
        self.version = e.version;
        if self.rare.is_some() || e.failure.is_some() || e.approval.is_some() || e.lease.is_some() {
            self.rare = Self::rare_of(e);
        }
        self.snapshots.clear();
        // A list that left its inline slots is freed, not reused: its
        // memory went cold while the entry waited for eviction, and a
        // fresh one comes warm from the allocator.
        if self.events.spilled() {
            self.events = SmallVec::new();
        } else {
            self.events.clear();
        }
    }

    /// Reads a word on each cache line of the entry's box (an event is
    /// 48 bytes: every other one is on a line of its own).
    fn touch_box(&self) {
        std::hint::black_box((
            self.version,
            self.created_at,
            self.snapshots.first().map(|s| s.captured_at),
            self.events.first().map(|e| e.time),
            self.events.get(2).map(|e| e.time),
        ));
    }

    /// Reads what dropping the entry's parts reads: the shared counts of
    /// its own documents, and its events when they left the box.
    fn touch_parts(&self) {
        let spilled = self.events.spilled().then(|| {
            let times = self
                .events
                .iter()
                .step_by(2)
                .map(|e| e.time.timestamp_subsec_nanos());
            times.fold(0u32, u32::wrapping_add)
        });
        std::hint::black_box((
            self.inputs.touch(),
            self.output.as_ref().map(Json::touch),
            self.events.last().map(|e| e.data.touch()),
            spilled,
        ));
    }

    fn execution(&self) -> Execution {
        let rare = self.rare.as_deref().cloned().unwrap_or_default();
        Execution {
            id: self.id,
            action: Arc::clone(&self.action),
            status: self.status,
            principal: Arc::clone(&self.principal),
            inputs: self.inputs.clone(),
            output: self.output.clone(),
            failure: rare.failure,
            approval: rare.approval,
            lease: rare.lease,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            version: self.version,
        }
    }

    fn lease(&self) -> Option<&Lease> {
        self.rare.as_ref().and_then(|r| r.lease.as_ref())
    }

    fn lease_mut(&mut self) -> &mut Option<Lease> {
        &mut self.rare.get_or_insert_with(Box::default).lease
    }

    /// [`Transition::apply_to`] for the compact form.
    fn apply(&mut self, t: &Transition) {
        self.status = t.to;
        self.version += 1;
        self.updated_at = t.at;
        if t.to.is_terminal() {
            self.finished_at = Some(t.at);
            if let Some(r) = &mut self.rare {
                r.lease = None;
            }
        }
        if let Some(o) = &t.output {
            self.output = Some(o.clone());
        }
        if t.clear_lease
            && let Some(r) = &mut self.rare
        {
            r.lease = None;
        }
        if let (Some(l), false) = (&t.lease, t.to.is_terminal()) {
            *self.lease_mut() = Some(l.clone());
        }
        if let Some(f) = &t.failure {
            self.rare.get_or_insert_with(Box::default).failure = Some(f.clone());
        }
        if let Some(a) = &t.approval {
            self.rare.get_or_insert_with(Box::default).approval = Some(a.clone());
        }
    }

    /// Adds a write's snapshot and events.
    fn push_parts(&mut self, parts: Parts<'_>) {
        self.reserve_events(match &parts {
            Parts::Shared { events, .. } => events.len(),
            Parts::Taken { events, .. } => events.len(),
        });
        // Pushed one by one: `SmallVec::extend` through a mapping
        // iterator costs more than the pushes.
        match parts {
            Parts::Shared { events, snapshot } => {
                if let Some(s) = snapshot {
                    self.snapshots.push(StoredSnapshot::of(s));
                }
                for e in events {
                    self.events.push(e.clone());
                }
            }
            Parts::Taken { events, snapshot } => {
                if let Some(s) = snapshot.take() {
                    self.snapshots.push(s.into());
                }
                for e in events.drain(..) {
                    self.events.push(e);
                }
            }
        }
    }

    fn reserve_events(&mut self, added: usize) {
        let len = self.events.len() + added;
        if len > self.events.inline_size() && len > self.events.capacity() {
            // Off the inline slots: room for the closing step's events
            // too (post-execution decisions, the snapshot's, completion),
            // so the list moves once, not at every step.
            self.events.reserve_exact(added + CLOSING_EVENTS);
        }
    }

    fn event(&self, e: &EventRecord) -> Event {
        e.clone().into_event(self.id, Arc::clone(&self.action))
    }

    fn snapshot(&self, s: &StoredSnapshot) -> Snapshot {
        Snapshot {
            execution_id: self.id,
            checkpoint: s.checkpoint,
            captured_at: s.captured_at,
            state: s.state.clone(),
        }
    }
}

/// An audit entry with its hash as bytes (once computed, see
/// `audit_entries`); its previous hash is the entry before it (or
/// the hash before the retained window). The fields every record has are
/// kept inline, the rest boxed only when present.
#[derive(Debug)]
struct StoredAudit {
    seq: u64,
    execution_id: ExecutionId,
    status: ExecutionStatus,
    at: DateTime<Utc>,
    action: Arc<str>,
    /// The caller, shared with the execution's record when it is the same.
    principal: Arc<Principal>,
    hash: [u8; 32],
    rest: Option<Box<AuditRest>>,
}

#[derive(Debug)]
struct AuditRest {
    tenant: Option<String>,
    decisions: Arc<[crate::audit::DecisionRecord]>,
    inputs: Option<Json>,
    output: Option<Json>,
    failure: Option<String>,
    tags: Arc<[String]>,
    approved_digest: Option<String>,
}

impl StoredAudit {
    fn new(seq: u64, r: AuditRecord, hash: [u8; 32], caller: Arc<Principal>) -> Self {
        let plain = r.tenant.is_none()
            && r.decisions.is_empty()
            && r.inputs.is_none()
            && r.output.is_none()
            && r.failure.is_none()
            && r.tags.is_empty()
            && r.approved_digest.is_none();
        Self {
            seq,
            execution_id: r.execution_id,
            status: r.status,
            at: r.at,
            action: r.action,
            principal: if caller.id == *r.principal {
                caller
            } else {
                Arc::new(Principal::new(&*r.principal))
            },
            hash,
            rest: (!plain).then(|| {
                Box::new(AuditRest {
                    tenant: r.tenant,
                    decisions: r.decisions,
                    inputs: r.inputs,
                    output: r.output,
                    failure: r.failure,
                    tags: r.tags,
                    approved_digest: r.approved_digest,
                })
            }),
        }
    }

    fn record(&self) -> AuditRecord {
        let rest = self.rest.as_deref();
        AuditRecord {
            execution_id: self.execution_id,
            action: Arc::clone(&self.action),
            principal: self.principal.id.as_str().into(),
            tenant: rest.and_then(|r| r.tenant.clone()),
            status: self.status,
            at: self.at,
            decisions: rest.map(|r| r.decisions.clone()).unwrap_or_default(),
            inputs: rest.and_then(|r| r.inputs.clone()),
            output: rest.and_then(|r| r.output.clone()),
            failure: rest.and_then(|r| r.failure.clone()),
            tags: rest.map(|r| r.tags.clone()).unwrap_or_default(),
            approved_digest: rest.and_then(|r| r.approved_digest.clone()),
        }
    }
}

/// One shard's executions and audit entries.
#[derive(Debug, Default)]
struct Inner {
    /// Newest first. A B-tree node is searched from its first key, so
    /// the keys a call touches (its new execution, the oldest finished
    /// one to evict) sit at the ends: the new one at the front, found
    /// with one comparison per level, the oldest at the back, reached
    /// without any (`last_entry`). In id order, every write compared
    /// its way across each level (about 8% of a call's instructions).
    entries: BTreeMap<Reverse<ExecutionId>, Box<Entry>>,
    /// Finished executions, oldest first: the eviction order.
    finished: VecDeque<ExecutionId>,
    /// This shard's audit entries, in the order written: those numbered
    /// (in the store's sequence, so the shards' entries interleave), then
    /// those not numbered yet (`seq` 0, see [`MemoryStore::number_audit`]).
    audit: VecDeque<StoredAudit>,
    /// The newest numbered audit entry this shard dropped (0: none yet)
    /// and its hash (all zeros: dropped before it was hashed).
    dropped_seq: u64,
    dropped_hash: [u8; 32],
    /// Audit entries dropped before they were numbered.
    dropped_unnumbered: u64,
}

/// A shard on cache lines of its own: a write on one thread does not
/// take the line another thread's shard sits on.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Inner>);

/// How far the audit log has been numbered and hashed (entries get both
/// when the log is read, in sequence order across the shards).
#[derive(Debug, Default)]
struct Chain {
    numbered_to: u64,
    hashed_to: u64,
    hashed_to_hash: [u8; 32],
}

/// What the store holds besides executions.
#[derive(Debug, Default)]
struct Settings {
    grants: Vec<Grant>,
    pauses: BTreeMap<String, Pause>,
}

/// Keeps everything in process memory, bounded by a capacity: when more
/// than `capacity` finished executions are held, the oldest finished ones
/// are evicted (with their snapshots, events and audit entries). Pending,
/// parked and running executions are never evicted.
///
/// Executions are kept in shards, one per thread that creates them (an
/// execution id names its thread's shard), so callers on different
/// threads do not wait for each other or pass the store's memory between
/// their cores. The capacity is split evenly among the shards in use:
/// each evicts its own oldest finished executions beyond its share. With
/// one thread writing, that is exactly the oldest.
///
/// The audit log is hash-chained like every store's, but an entry's
/// sequence number and hash are given when the log is first read
/// ([`Store::audit_entries`]), not on the call's path: in memory, the
/// chain proves nothing to anyone who never reads it, and it is gone with
/// the process. Entries evicted before anyone read them were never
/// hashed; the entry after them starts its chain from
/// [`crate::EVICTED_UNREAD_HASH`] (the window's first `prev_hash` is
/// trusted, see [`crate::verify_chain`]). Once read, an entry's number
/// and hash never change.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Shard]>,
    /// Bit `i` set once shard `i` has been written to.
    used: AtomicU32,
    chain: Mutex<Chain>,
    settings: Mutex<Settings>,
    outbox: outbox::Outbox,
    capacity: usize,
    changes: broadcast::Sender<Change>,
    /// Whether anyone ever called [`Store::watch`]: until then a write
    /// skips the announcement (asking the channel for its receivers takes
    /// its lock).
    watched: AtomicBool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock().map_err(|_| {
        StoreError::new(
            StoreErrorKind::Unavailable,
            "lock",
            "memory store poisoned by a panic",
        )
    })
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
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            used: AtomicU32::new(0),
            chain: Mutex::default(),
            settings: Mutex::default(),
            outbox: outbox::Outbox::default(),
            capacity: capacity.max(1),
            changes,
            watched: AtomicBool::new(false),
        }
    }

    /// Number of executions held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.0.lock().ok().map(|i| i.entries.len()))
            .sum()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard holding execution `id`.
    fn shard(&self, id: ExecutionId) -> Result<MutexGuard<'_, Inner>, StoreError> {
        lock(&self.shards[crate::ids::shard_of(id.as_uuid())].0)
    }

    /// Every shard, locked in order (the only order two are ever held in).
    fn all(&self) -> Result<Vec<MutexGuard<'_, Inner>>, StoreError> {
        self.shards.iter().map(|s| lock(&s.0)).collect()
    }

    /// The finished executions (and audit entries) each shard in use keeps.
    fn share(&self) -> usize {
        let in_use = self.used.load(Ordering::Relaxed).count_ones().max(1);
        (self.capacity / in_use as usize).max(1)
    }

    /// Marks shard `i` in use; the first write to it shrinks every other
    /// shard to the new share.
    fn mark_used(&self, i: usize) {
        let bit = 1u32 << i;
        if self.used.load(Ordering::Relaxed) & bit != 0
            || self.used.fetch_or(bit, Ordering::Relaxed) & bit != 0
        {
            return;
        }
        let share = self.share();
        for (j, s) in self.shards.iter().enumerate() {
            if j != i
                && let Ok(mut inner) = s.0.lock()
            {
                inner.evict(share);
            }
        }
    }

    /// Leases up to `limit` executions that `claimable` accepts to `owner`,
    /// oldest first.
    fn claim_where(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
        claimable: impl Fn(&Entry, DateTime<Utc>) -> bool,
    ) -> Result<Vec<Execution>, StoreError> {
        let now = Utc::now();
        let until = lease_until(now, lease);
        let mut shards = self.all()?;
        let mut candidates: Vec<(ExecutionId, usize)> = Vec::new();
        for (i, inner) in shards.iter().enumerate() {
            let wanted = inner
                .entries
                .values()
                .rev()
                .filter(|e| actions.is_none_or(|a| a.contains(&&*e.action)) && claimable(e, now))
                .take(limit);
            candidates.extend(wanted.map(|e| (e.id, i)));
        }
        candidates.sort_unstable();
        candidates.truncate(limit);
        let mut claimed = Vec::with_capacity(candidates.len());
        for (id, i) in candidates {
            if let Some(entry) = shards[i].entries.get_mut(&Reverse(id)) {
                *entry.lease_mut() = Some(Lease {
                    owner: owner.to_owned(),
                    until,
                });
                claimed.push(entry.execution());
            }
        }
        Ok(claimed)
    }

    fn announce(&self, id: ExecutionId, status: ExecutionStatus) {
        // A watcher subscribes before it reads the store, and the store's
        // lock orders that read against this write: either the read sees
        // the write, or this load sees the flag.
        if self.watched.load(Ordering::Acquire) && self.changes.receiver_count() > 0 {
            let _ = self.changes.send(Change { id, status });
        }
    }
}

impl Inner {
    /// Book-keeping after a write: finished executions queue for eviction,
    /// audit records join the shard's log, to be numbered when the log is
    /// read (a number taken here would be a counter every caller's core
    /// writes).
    fn record(
        &mut self,
        id: ExecutionId,
        status: ExecutionStatus,
        audit: Option<(AuditRecord, Arc<Principal>)>,
        store: &MemoryStore,
    ) {
        if status.is_terminal() {
            self.finished.push_back(id);
        }
        if let Some((record, caller)) = audit {
            let stored = StoredAudit::new(0, record, [0; 32], caller);
            self.audit.push_back(stored);
        }
        self.evict(store.share());
    }

    fn evict(&mut self, share: usize) {
        let mut evicting = false;
        while self.finished.len() > share {
            let Some(id) = self.finished.pop_front() else {
                break;
            };
            let evicted = match self.entries.last_entry() {
                Some(oldest) if oldest.key().0 == id => Some(oldest.remove()),
                _ => self.entries.remove(&Reverse(id)),
            };
            EVICTED.set(evicted);
            evicting = true;
        }
        while self.audit.len() > share {
            self.drop_oldest_audit();
        }
        if evicting {
            self.warm_next_evictions();
        }
    }

    /// Evicted executions were written long ago: their memory has left
    /// the cache, and freeing them waited for it line by line (a fifth of
    /// a call with a full store). Loading it a call or two ahead, in
    /// independent reads, lets the waits overlap with other work.
    fn warm_next_evictions(&self) {
        let mut oldest = self.entries.values().rev();
        if let Some(next) = oldest.next() {
            next.touch_parts();
        }
        if let Some(after) = oldest.next() {
            after.touch_box();
        }
        if let Some(rest) = self.audit.front().and_then(|a| a.rest.as_deref()) {
            std::hint::black_box(rest.decisions.len());
        }
    }

    fn drop_oldest_audit(&mut self) {
        match self.audit.pop_front() {
            Some(gone) if gone.seq == 0 => self.dropped_unnumbered += 1,
            Some(gone) => {
                self.dropped_seq = gone.seq;
                self.dropped_hash = gone.hash;
            }
            None => {}
        }
    }

    fn entry(&mut self, id: ExecutionId, op: &'static str) -> Result<&mut Entry, StoreError> {
        self.entries
            .get_mut(&Reverse(id))
            .map(|b| &mut **b)
            .ok_or_else(|| StoreError::not_found(op, format!("execution {id} does not exist")))
    }
}

/// The audit entries every shard holds, walked in sequence order.
struct AuditWalk<'g, 's> {
    shards: &'g mut [MutexGuard<'s, Inner>],
    /// Per shard, the index of its next entry.
    next: Vec<usize>,
}

impl<'g, 's> AuditWalk<'g, 's> {
    /// Positioned at the first entry at or after `seq`.
    fn from(shards: &'g mut [MutexGuard<'s, Inner>], seq: u64) -> Self {
        let next = shards
            .iter()
            .map(|s| s.audit.partition_point(|a| a.seq < seq))
            .collect();
        Self { shards, next }
    }

    /// Entry `seq`, which must be the next one.
    fn take(&mut self, seq: u64) -> Option<&mut StoredAudit> {
        let i = (0..self.shards.len()).find(|&i| {
            self.shards[i]
                .audit
                .get(self.next[i])
                .is_some_and(|a| a.seq == seq)
        })?;
        self.next[i] += 1;
        self.shards[i].audit.get_mut(self.next[i] - 1)
    }
}

impl MemoryStore {
    /// Writes `c` with `parts`, taking its audit record from `audit` once
    /// the write is certain (so a failed write leaves it to the caller).
    fn create_now(
        &self,
        c: &Creation,
        parts: Parts<'_>,
        audit: &mut Option<AuditRecord>,
    ) -> Result<(), StoreError> {
        c.check()?;
        let id = c.execution.id;
        // Built before the lock is taken, to hold it for less time.
        let mut entry = match EVICTED.take() {
            Some(mut evicted) => {
                evicted.reset(&c.execution);
                evicted
            }
            None => Box::new(Entry::new(&c.execution)),
        };
        entry.push_parts(parts);
        let caller = audit.is_some().then(|| Arc::clone(&entry.principal));
        let shard = crate::ids::shard_of(id.as_uuid());
        self.mark_used(shard);
        let mut inner = lock(&self.shards[shard].0)?;
        let btree_map::Entry::Vacant(slot) = inner.entries.entry(Reverse(id)) else {
            return Err(StoreError::new(
                StoreErrorKind::AlreadyExists,
                "create",
                format!("execution {id} already exists"),
            ));
        };
        slot.insert(entry);
        let audit = caller.and_then(|caller| audit.take().map(|r| (r, caller)));
        inner.record(id, c.execution.status, audit, self);
        // With the shard locked: a reader sees both or neither.
        self.outbox.put(&c.notifications)?;
        drop(inner);
        self.announce(id, c.execution.status);
        Ok(())
    }

    /// Applies `t` with `parts`, taking its audit record as
    /// [`Self::create_now`] does.
    fn transition_now(
        &self,
        t: &Transition,
        parts: Parts<'_>,
        audit: &mut Option<AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut inner = self.shard(t.id)?;
        let entry = inner.entry(t.id, "transition")?;
        // The clock is read only when a lease has to be checked.
        let now = if t.lease_owner.is_some() {
            Utc::now()
        } else {
            t.at
        };
        t.check_state(entry.status, entry.lease(), now)?;
        t.check_version(entry.version)?;
        entry.apply(t);
        entry.push_parts(parts);
        let audit = audit.take().map(|r| (r, Arc::clone(&entry.principal)));
        inner.record(t.id, t.to, audit, self);
        self.outbox.put(&t.notifications)?;
        drop(inner);
        self.announce(t.id, t.to);
        Ok(())
    }

    /// Numbers the audit entries written since the log was last read.
    /// Entries dropped before anyone numbered them take the first new
    /// numbers (the window then starts after them, its chain from
    /// [`crate::EVICTED_UNREAD_HASH`]); the shards' new entries follow,
    /// merged by time, each shard's in the order written.
    fn number_audit(chain: &mut Chain, shards: &mut [MutexGuard<'_, Inner>]) {
        let dropped: u64 = shards
            .iter_mut()
            .map(|s| std::mem::take(&mut s.dropped_unnumbered))
            .sum();
        if dropped > 0
            && let Some(first) = shards.first_mut()
        {
            chain.numbered_to += dropped;
            first.dropped_seq = chain.numbered_to;
            first.dropped_hash = [0; 32];
        }
        let mut next: Vec<usize> = shards
            .iter()
            .map(|s| s.audit.partition_point(|a| a.seq != 0))
            .collect();
        loop {
            let oldest = (0..shards.len())
                .filter_map(|i| {
                    shards[i]
                        .audit
                        .get(next[i])
                        .map(|a| (a.at, a.execution_id, i))
                })
                .min();
            let Some((_, _, i)) = oldest else { break };
            chain.numbered_to += 1;
            if let Some(a) = shards[i].audit.get_mut(next[i]) {
                a.seq = chain.numbered_to;
            }
            next[i] += 1;
        }
    }

    /// Drops the audit entries before the log's window (the newest entry
    /// any shard dropped): another shard dropped them already. Returns the
    /// window's last dropped sequence number and the `prev_hash` of its
    /// first entry.
    fn audit_window(chain: &mut Chain, shards: &mut [MutexGuard<'_, Inner>]) -> (u64, [u8; 32]) {
        let (dropped, dropped_hash) = shards
            .iter()
            .map(|s| (s.dropped_seq, s.dropped_hash))
            .max_by_key(|(seq, _)| *seq)
            .unwrap_or_default();
        for s in shards.iter_mut() {
            while s.audit.front().is_some_and(|a| a.seq <= dropped) {
                s.drop_oldest_audit();
            }
        }
        if dropped == 0 {
            return (0, [0; 32]);
        }
        if chain.hashed_to < dropped {
            // Dropped before anyone read them: the chain starts again.
            chain.hashed_to = dropped;
            chain.hashed_to_hash = EVICTED_UNREAD;
        }
        let prev = if dropped_hash == [0; 32] {
            EVICTED_UNREAD
        } else {
            dropped_hash
        };
        (dropped, prev)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, c: &Creation) -> Result<(), StoreError> {
        let parts = Parts::shared(&c.events, &c.snapshot);
        self.create_now(c, parts, &mut c.audit.clone())
    }

    async fn transition(&self, t: &Transition) -> Result<(), StoreError> {
        let parts = Parts::shared(&t.events, &t.snapshot);
        self.transition_now(t, parts, &mut t.audit.clone())
    }

    /// Moves the events, the snapshot and the audit record into the
    /// store; a failed write leaves the audit record. (Written out here
    /// and in `transition_in_place`: moving the three through one struct
    /// copied them twice, about 200 instructions more per call.)
    fn create_in_place(&self, c: &mut Creation) -> Option<Result<(), StoreError>> {
        let mut audit = take_some(&mut c.audit);
        let mut snapshot = take_some(&mut c.snapshot);
        let mut events = std::mem::take(&mut c.events);
        let parts = Parts::Taken {
            events: &mut events,
            snapshot: &mut snapshot,
        };
        let written = self.create_now(c, parts, &mut audit);
        c.events = events;
        put_back(&mut c.snapshot, snapshot);
        put_back(&mut c.audit, audit);
        Some(written)
    }

    /// As [`Self::create_in_place`].
    fn transition_in_place(&self, t: &mut Transition) -> Option<Result<(), StoreError>> {
        let mut audit = take_some(&mut t.audit);
        let mut snapshot = take_some(&mut t.snapshot);
        let mut events = std::mem::take(&mut t.events);
        let parts = Parts::Taken {
            events: &mut events,
            snapshot: &mut snapshot,
        };
        let written = self.transition_now(t, parts, &mut audit);
        t.events = events;
        put_back(&mut t.snapshot, snapshot);
        put_back(&mut t.audit, audit);
        Some(written)
    }

    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        Ok(self
            .shard(id)?
            .entries
            .get(&Reverse(id))
            .map(|e| e.execution()))
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, StoreError> {
        let older = match query.before {
            Some(b) => Bound::Excluded(Reverse(b)),
            None => Bound::Unbounded,
        };
        let limit = query.effective_limit();
        let mut out = Vec::new();
        for inner in self.all()? {
            let matching = inner
                .entries
                .range((older, Bound::Unbounded))
                .map(|(_, e)| e)
                .filter(|e| {
                    query.matches_fields(e.id, &e.action, &e.principal.id, e.status, e.created_at)
                })
                .take(limit)
                .map(|e| e.execution());
            out.extend(matching);
        }
        // Newest first, across the shards.
        out.sort_unstable_by_key(|e| Reverse(e.id));
        out.truncate(limit);
        Ok(out)
    }

    async fn count_executions(&self, query: &ExecutionQuery) -> Result<u64, StoreError> {
        let mut count = 0u64;
        for inner in self.all()? {
            count += inner
                .entries
                .values()
                .filter(|e| {
                    query.matches_fields(e.id, &e.action, &e.principal.id, e.status, e.created_at)
                })
                .count() as u64;
        }
        Ok(count)
    }

    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError> {
        Ok(self
            .shard(id)?
            .entries
            .get(&Reverse(id))
            .map(|e| e.snapshots.iter().map(|s| e.snapshot(s)).collect())
            .unwrap_or_default())
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let limit = query.effective_limit();
        let mut out: Vec<Event> = match query.execution_id {
            Some(id) => self
                .shard(id)?
                .entries
                .get(&Reverse(id))
                .map(|e| {
                    e.events
                        .iter()
                        .map(|s| e.event(s))
                        .filter(|ev| query.matches(ev))
                        .collect()
                })
                .unwrap_or_default(),
            None => {
                let mut all = Vec::new();
                for inner in self.all()? {
                    let events = inner
                        .entries
                        .values()
                        .flat_map(|e| e.events.iter().map(move |s| e.event(s)))
                        .filter(|ev| query.matches(ev));
                    all.extend(events);
                }
                all
            }
        };
        out.sort_by_key(|e| e.id);
        out.truncate(limit);
        Ok(out)
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut chain = lock(&self.chain)?;
        let mut shards = self.all()?;
        Self::number_audit(&mut chain, &mut shards);
        let (dropped, window_prev) = Self::audit_window(&mut chain, &mut shards);
        let newest = chain.numbered_to;
        let last = after
            .max(dropped)
            .saturating_add(u64::try_from(limit).unwrap_or(u64::MAX))
            .min(newest);
        // From the first entry to hash or, if all are, the one before the
        // first returned (its hash is that entry's `prev_hash`).
        let start = (chain.hashed_to + 1).min(after).max(dropped + 1);
        let mut prev = if start == dropped + 1 {
            window_prev
        } else {
            chain.hashed_to_hash
        };
        let mut walk = AuditWalk::from(&mut shards, start);
        let mut out = Vec::new();
        for seq in start..=last {
            let Some(e) = walk.take(seq) else { break };
            if seq > chain.hashed_to {
                e.hash = chain_digest(&prev, seq, &e.record());
                chain.hashed_to = seq;
                chain.hashed_to_hash = e.hash;
            }
            if seq > after && out.len() < limit {
                out.push(AuditEntry {
                    seq,
                    record: e.record(),
                    prev_hash: hex(&prev),
                    hash: hex(&e.hash),
                });
            }
            prev = e.hash;
        }
        Ok(out)
    }

    async fn claim(
        &self,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        self.claim_where(owner, lease, limit, actions, |e, now| {
            e.status == status && e.lease().is_none_or(|l| l.until <= now)
        })
    }

    async fn claim_abandoned(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        self.claim_where(owner, lease, limit, actions, |e, now| {
            e.status == ExecutionStatus::Running && e.lease().is_some_and(|l| l.until <= now)
        })
    }

    async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut inner = self.shard(id)?;
        match inner.entry(id, "renew_lease")?.lease_mut() {
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
        let mut inner = self.shard(id)?;
        let lease = inner.entry(id, "release_lease")?.lease_mut();
        match lease {
            Some(l) if l.owner == owner && l.until > now => {
                *lease = None;
                Ok(())
            }
            _ => Err(StoreError::conflict(
                "release_lease",
                format!("lease on {id} is not held by `{owner}`"),
            )),
        }
    }

    fn watch(&self) -> broadcast::Receiver<Change> {
        self.watched.store(true, Ordering::Release);
        self.changes.subscribe()
    }

    async fn put_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        let mut settings = lock(&self.settings)?;
        // Lapsed grants go when a new one arrives, so the list stays small.
        let now = Utc::now();
        settings.grants.retain(|g| g.until > now);
        settings.grants.push(grant.clone());
        Ok(())
    }

    async fn grants(
        &self,
        action: &str,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        Ok(lock(&self.settings)?
            .grants
            .iter()
            .filter(|g| g.action == action && g.principal == principal && g.until > now)
            .cloned()
            .collect())
    }

    async fn valid_grants(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Grant>, StoreError> {
        let mut valid: Vec<Grant> = lock(&self.settings)?
            .grants
            .iter()
            .filter(|g| g.until > now)
            .cloned()
            .collect();
        valid.sort_by_key(|g| g.id);
        valid.truncate(limit);
        Ok(valid)
    }

    async fn remove_grant(&self, id: uuid::Uuid) -> Result<Option<Grant>, StoreError> {
        let mut settings = lock(&self.settings)?;
        let found = settings.grants.iter().position(|g| g.id == id);
        Ok(found.map(|i| settings.grants.remove(i)))
    }

    async fn put_pause(&self, pause: &Pause) -> Result<(), StoreError> {
        let mut settings = lock(&self.settings)?;
        settings
            .pauses
            .insert(pause.key().to_owned(), pause.clone());
        Ok(())
    }

    async fn remove_pause(&self, key: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.settings)?.pauses.remove(key).is_some())
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        Ok(lock(&self.settings)?.pauses.values().cloned().collect())
    }
    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        self.outbox.claim(owner, now, lease, limit)
    }
    async fn finish_notification(
        &self,
        notification: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.outbox.finish(notification, owner, now)
    }
    async fn notifications(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        self.outbox.list(query)
    }
    async fn retry_notification(
        &self,
        id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        self.outbox.retry(id, now)
    }
}
