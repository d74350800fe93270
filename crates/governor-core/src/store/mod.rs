//! Durable storage of executions, snapshots, events and the audit log.
//!
//! Every backend implements [`Store`] and passes the shared conformance
//! suite (`governor_core::store_conformance!`, feature `testing`). The
//! trait is built for several instances sharing one database: status
//! changes are conditional (the expected current status is part of the
//! write), work is claimed with expiring leases, and changes are announced
//! to watchers.

mod memory;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::broadcast;

use crate::approval::ApprovalRequest;
use crate::audit::{AuditEntry, AuditRecord};
use crate::error::StoreError;
use crate::event::{Event, EventKind, EventRecord};
use crate::execution::{
    Execution, ExecutionId, ExecutionStatus, Failure, Lease, Snapshot, StatusSet,
};
use crate::grant::Grant;
use crate::json::Json;
use crate::outbox::{Notification, NotificationQuery};
use crate::pause::Pause;

pub use memory::MemoryStore;

/// A conditional status change and everything recorded with it, applied
/// atomically: either all of it is stored or none of it.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The execution.
    pub id: ExecutionId,
    /// The statuses the execution must currently be in.
    pub from: StatusSet,
    /// The new status.
    pub to: ExecutionStatus,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// Sets the output.
    pub output: Option<Json>,
    /// Sets the failure.
    pub failure: Option<Failure>,
    /// Sets the approval request.
    pub approval: Option<ApprovalRequest>,
    /// If set, the change only succeeds while this owner holds the lease.
    pub lease_owner: Option<String>,
    /// If set, the change only succeeds if the execution's version is
    /// still this one (nobody changed it since it was read).
    pub expect_version: Option<u64>,
    /// Sets the work lease (on a successful, non-terminal change).
    pub lease: Option<Lease>,
    /// Removes the work lease (terminal changes always do).
    pub clear_lease: bool,
    /// A snapshot to save.
    pub snapshot: Option<Snapshot>,
    /// Events to append.
    pub events: Vec<EventRecord>,
    /// An audit record to chain.
    pub audit: Option<AuditRecord>,
    /// Notifications to put in the outbox.
    pub notifications: Vec<Notification>,
}

impl Transition {
    /// A change of `id` from any of `from` to `to`, now.
    pub fn new(id: ExecutionId, from: impl Into<StatusSet>, to: ExecutionStatus) -> Self {
        Self::at(Utc::now(), id, from, to)
    }

    /// A change of `id` from any of `from` to `to`, at `at`.
    pub fn at(
        at: DateTime<Utc>,
        id: ExecutionId,
        from: impl Into<StatusSet>,
        to: ExecutionStatus,
    ) -> Self {
        Self {
            id,
            from: from.into(),
            to,
            at,
            output: None,
            failure: None,
            approval: None,
            lease_owner: None,
            expect_version: None,
            lease: None,
            clear_lease: false,
            snapshot: None,
            events: Vec::new(),
            audit: None,
            notifications: Vec::new(),
        }
    }

    /// Drops everything the change carries, keeping the allocation of its
    /// event list (for a box kept to be reused).
    pub(crate) fn clear(&mut self) {
        let (at, id, from, to) = (self.at, self.id, self.from, self.to);
        self.reset(at, id, from, to);
    }

    /// Makes this the change [`Transition::at`] would build, keeping the
    /// allocations of its event list (a run reuses one box for its steps).
    pub(crate) fn reset(
        &mut self,
        at: DateTime<Utc>,
        id: ExecutionId,
        from: StatusSet,
        to: ExecutionStatus,
    ) {
        // Destructured, so a new field cannot be forgotten here.
        let Self {
            id: i,
            from: f,
            to: t,
            at: a,
            output,
            failure,
            approval,
            lease_owner,
            expect_version,
            lease,
            clear_lease,
            snapshot,
            events,
            audit,
            notifications,
        } = self;
        (*i, *f, *t, *a) = (id, from, to, at);
        *output = None;
        *failure = None;
        *approval = None;
        *lease_owner = None;
        *expect_version = None;
        *lease = None;
        *clear_lease = false;
        *snapshot = None;
        events.clear();
        *audit = None;
        notifications.clear();
    }

    /// Applies the change to an in-memory execution (for stores that keep
    /// whole records), after the caller checked `from` and the lease.
    pub fn apply_to(&self, e: &mut Execution) {
        e.status = self.to;
        e.version += 1;
        e.updated_at = self.at;
        if self.to.is_terminal() {
            e.finished_at = Some(self.at);
            e.lease = None;
        }
        if let Some(o) = &self.output {
            e.output = Some(o.clone());
        }
        if let Some(f) = &self.failure {
            e.failure = Some(f.clone());
        }
        if let Some(a) = &self.approval {
            e.approval = Some(a.clone());
        }
        if self.clear_lease {
            e.lease = None;
        }
        if let (Some(l), false) = (&self.lease, self.to.is_terminal()) {
            e.lease = Some(l.clone());
        }
    }

    /// Checks the transition against the execution's current state: the
    /// expected status, the state machine, and the lease.
    pub fn check(&self, current: &Execution, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.check_state(current.status, current.lease.as_ref(), now)?;
        self.check_version(current.version)
    }

    /// Checks [`expect_version`](Self::expect_version) against the
    /// execution's current version.
    pub fn check_version(&self, version: u64) -> Result<(), StoreError> {
        match self.expect_version {
            Some(expected) if expected != version => Err(StoreError::conflict(
                "transition",
                format!(
                    "execution {} changed since it was read (version {version}, expected {expected})",
                    self.id
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Why a conditional write of this transition matched nothing, given
    /// the execution's current status, lease and version (`None`: there is
    /// no such execution).
    pub fn explain_miss(
        &self,
        current: Option<(ExecutionStatus, Option<&Lease>, u64)>,
    ) -> StoreError {
        const OP: &str = "transition";
        let Some((status, lease, version)) = current else {
            return StoreError::not_found(OP, format!("execution {} does not exist", self.id));
        };
        let checked = self
            .check_state(status, lease, Utc::now())
            .and_then(|()| self.check_version(version));
        match checked {
            Err(e) => e,
            Ok(()) => {
                StoreError::conflict(OP, format!("execution {} changed concurrently", self.id))
            }
        }
    }

    /// [`check`](Self::check) for backends that read only the status and
    /// lease.
    pub fn check_state(
        &self,
        status: ExecutionStatus,
        lease: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !self.from.contains(status) {
            let expected: Vec<&str> = self.from.iter().map(ExecutionStatus::as_str).collect();
            return Err(StoreError::conflict(
                "transition",
                format!(
                    "execution {} is {status}, not {}",
                    self.id,
                    expected.join(" or ")
                ),
            ));
        }
        if !status.can_become(self.to) {
            return Err(StoreError::new(
                crate::StoreErrorKind::Invalid,
                "transition",
                format!(
                    "execution {} cannot go from {status} to {}",
                    self.id, self.to
                ),
            ));
        }
        if let Some(owner) = &self.lease_owner {
            let held = lease.is_some_and(|l| &l.owner == owner && l.until > now);
            if !held {
                return Err(StoreError::conflict(
                    "transition",
                    format!("execution {}: lease is not held by `{owner}`", self.id),
                ));
            }
        }
        Ok(())
    }
}

/// A new execution and everything recorded with it, written atomically.
///
/// The execution's status is `Pending`, or a status reachable from
/// `Pending` when the engine decided the first step before writing
/// (`Running`, `Denied`, `AwaitingApproval`, ...).
#[derive(Debug, Clone)]
pub struct Creation {
    /// The execution.
    pub execution: Execution,
    /// Its first events.
    pub events: Vec<EventRecord>,
    /// A snapshot to save.
    pub snapshot: Option<Snapshot>,
    /// An audit record to chain.
    pub audit: Option<AuditRecord>,
    /// Notifications to put in the outbox.
    pub notifications: Vec<Notification>,
}

impl Creation {
    /// Just the execution, with no events.
    pub fn new(execution: Execution) -> Self {
        Self {
            execution,
            events: Vec::new(),
            snapshot: None,
            audit: None,
            notifications: Vec::new(),
        }
    }

    /// Checks the initial status against the state machine.
    pub fn check(&self) -> Result<(), StoreError> {
        let s = self.execution.status;
        if s == ExecutionStatus::Pending || ExecutionStatus::Pending.can_become(s) {
            Ok(())
        } else {
            Err(StoreError::new(
                crate::StoreErrorKind::Invalid,
                "create",
                format!("execution {} cannot start as {s}", self.execution.id),
            ))
        }
    }
}

/// Takes `slot`'s value out only when there is one: `take` copies the
/// whole slot, even when empty (an audit record is 200 bytes).
pub(crate) fn take_some<T>(slot: &mut Option<T>) -> Option<T> {
    if slot.is_some() { slot.take() } else { None }
}

/// Puts back what a failed in-place write did not take.
pub(crate) fn put_back<T>(slot: &mut Option<T>, left: Option<T>) {
    if left.is_some() {
        *slot = left;
    }
}

/// Filters for listing executions. Results are newest first.
#[derive(Debug, Clone, Default)]
pub struct ExecutionQuery {
    /// Only these statuses (all when empty).
    pub statuses: Vec<ExecutionStatus>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this principal id.
    pub principal: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only executions older than this id.
    pub before: Option<ExecutionId>,
    /// At most this many (0 means 100; capped at 10,000).
    pub limit: usize,
}

impl ExecutionQuery {
    /// The effective limit.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(10_000),
        }
    }

    /// Whether `e` passes every filter (the cursor included) but the limit.
    pub fn matches(&self, e: &Execution) -> bool {
        self.matches_fields(e.id, &e.action, &e.principal.id, e.status, e.created_at)
    }

    /// [`matches`](Self::matches) on the filtered fields alone.
    pub fn matches_fields(
        &self,
        id: ExecutionId,
        action: &str,
        principal: &str,
        status: ExecutionStatus,
        created_at: DateTime<Utc>,
    ) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&status))
            && self.action.as_deref().is_none_or(|a| a == action)
            && self.principal.as_deref().is_none_or(|p| p == principal)
            && self.since.is_none_or(|s| created_at >= s)
            && self.until.is_none_or(|u| created_at < u)
            && self.before.is_none_or(|b| id < b)
    }
}

/// Filters for reading events. Results are oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this execution's events.
    pub execution_id: Option<ExecutionId>,
    /// Only these kinds (all when empty).
    pub kinds: Vec<EventKind>,
    /// Cursor: only events newer than this id. Ids order an execution's
    /// events exactly, and different executions' events by millisecond:
    /// events written on other threads or instances within the
    /// millisecond of the cursor may sort before it, so a reader tailing
    /// the log by cursor reads again from a millisecond before it.
    pub after: Option<uuid::Uuid>,
    /// At most this many (0 means 1,000; capped at 10,000).
    pub limit: usize,
}

impl EventQuery {
    /// The effective limit.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 1_000,
            n => n.min(10_000),
        }
    }

    /// Whether `e` passes every filter except the limit.
    pub fn matches(&self, e: &Event) -> bool {
        self.execution_id.is_none_or(|id| id == e.execution_id)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.after.is_none_or(|a| e.id > a)
    }
}

/// A status change, announced to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The execution.
    pub id: ExecutionId,
    /// Its new status.
    pub status: ExecutionStatus,
}

impl Change {
    /// Something changed that this store did not write itself (another
    /// process on the same database); which executions, it cannot tell.
    /// Watchers re-read what they wait for.
    pub fn elsewhere() -> Self {
        Self {
            id: ExecutionId::from_uuid(uuid::Uuid::nil()),
            status: ExecutionStatus::Pending,
        }
    }

    /// Whether this is [`Change::elsewhere`].
    pub fn is_elsewhere(&self) -> bool {
        self.id.as_uuid().is_nil()
    }
}

/// Durable storage behind a governor. Object-safe: used as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a new execution with its first events, snapshot and audit
    /// record. Fails with `AlreadyExists` if the id is taken and `Invalid`
    /// if the status is not one an execution can start in.
    async fn create(&self, creation: &Creation) -> Result<(), StoreError>;

    /// Applies a conditional transition atomically. Fails with `NotFound`,
    /// `Conflict` (not in `from`, or lease not held) or `Invalid` (the
    /// state machine forbids it).
    async fn transition(&self, transition: &Transition) -> Result<(), StoreError>;

    /// [`Store::create`] done on the spot by a store that never waits (the
    /// memory store), which spares a governed call a boxed future per
    /// write. `None`, the default, means "call `create`". The write may
    /// take the events, the snapshot and, once it succeeds, the audit
    /// record instead of copying them (a failed write leaves the audit
    /// record): the caller publishes copies of the events it made before.
    fn create_in_place(&self, creation: &mut Creation) -> Option<Result<(), StoreError>> {
        let _ = creation;
        None
    }

    /// [`Store::transition`] done on the spot, as for
    /// [`Store::create_in_place`].
    fn transition_in_place(&self, transition: &mut Transition) -> Option<Result<(), StoreError>> {
        let _ = transition;
        None
    }

    /// One execution.
    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError>;

    /// Executions matching `query`, newest first.
    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, StoreError>;

    /// How many executions match `query` (its `limit` ignored), counted
    /// by the store rather than read.
    async fn count_executions(&self, query: &ExecutionQuery) -> Result<u64, StoreError>;

    /// An execution's snapshots, in capture order.
    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError>;

    /// Events matching `query`, oldest first.
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;

    /// Audit entries with `seq > after`, in order, at most `limit`.
    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Takes a lease on up to `limit` executions in `status` whose lease is
    /// absent or lapsed, for `owner`, lasting `lease`; with `actions`, only
    /// executions of those actions (none for an empty list). Two
    /// concurrent claimers never receive the same execution.
    async fn claim(
        &self,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError>;

    /// Takes over up to `limit` running executions whose lease lapsed (their
    /// runner died), for `owner`; with `actions`, only executions of those
    /// actions. Running executions that never had a lease (run in place by
    /// their caller) are not taken.
    async fn claim_abandoned(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError>;

    /// Extends a lease `owner` holds. `Conflict` if it is not held.
    async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError>;

    /// Gives up a lease `owner` holds. `Conflict` if it is not held.
    async fn release_lease(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError>;

    /// Announcements of status changes made through this store handle
    /// (backends that can also report other processes' changes do).
    fn watch(&self) -> broadcast::Receiver<Change>;

    /// Stores a standing grant.
    async fn put_grant(&self, grant: &Grant) -> Result<(), StoreError>;

    /// The grants for `action` and `principal` still valid at `now`.
    async fn grants(
        &self,
        action: &str,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError>;

    /// Every grant still valid at `now`, oldest first, at most `limit`.
    async fn valid_grants(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Grant>, StoreError>;

    /// Removes the grant `id` (revoked); the grant removed, if it existed.
    async fn remove_grant(&self, id: uuid::Uuid) -> Result<Option<Grant>, StoreError>;

    /// Stores a pause, replacing the one with the same [`Pause::key`].
    async fn put_pause(&self, pause: &Pause) -> Result<(), StoreError>;

    /// Removes the pause with `key` (an action name, or `""` for every
    /// action); whether there was one.
    async fn remove_pause(&self, key: &str) -> Result<bool, StoreError>;

    /// Every active pause.
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError>;

    /// Leases up to `limit` notifications that are due at `now`
    /// ([`Notification::claimable`]) to `owner` until `now + lease`,
    /// oldest first; they come back with their lease.
    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError>;

    /// Stores `notification` as an attempt left it
    /// ([`Notification::after`]) if `owner` still holds its lease at
    /// `now`; `false` (nothing written) when it does not.
    async fn finish_notification(
        &self,
        notification: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The notifications `query` selects, oldest first.
    async fn notifications(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError>;

    /// Makes the dead notification `id` pending again, due at `now`; it,
    /// or `None` when no dead notification has that id.
    async fn retry_notification(
        &self,
        id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError>;
}

/// Writes `creation`, on the spot when the store can
/// ([`Store::create_in_place`]), through its future otherwise.
pub(crate) async fn create(store: &dyn Store, creation: &mut Creation) -> Result<(), StoreError> {
    match store.create_in_place(creation) {
        Some(done) => done,
        None => store.create(creation).await,
    }
}

/// Applies `transition`, on the spot when the store can
/// ([`Store::transition_in_place`]), through its future otherwise.
pub(crate) async fn transition(
    store: &dyn Store,
    transition: &mut Transition,
) -> Result<(), StoreError> {
    match store.transition_in_place(transition) {
        Some(done) => done,
        None => store.transition(transition).await,
    }
}

/// When a lease of length `lease` taken at `now` lapses.
pub fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A time as nanoseconds since the epoch: how the built-in stores keep
/// times (exact and sortable). Times past 2262 saturate.
pub fn to_nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The time [`to_nanos`] stored as `n`.
pub fn from_nanos(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

/// The smallest v7 id made at `t` shifted by `slack_ms`, for turning a time
/// range into an id range (ids can run a little ahead of their creation
/// time when many are made in one millisecond).
pub fn first_id_at(t: DateTime<Utc>, slack_ms: i64) -> uuid::Uuid {
    let ms = (t.timestamp_millis() + slack_ms).clamp(0, 0xFFFF_FFFF_FFFF) as u64;
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    id[6] = 0x70;
    id[8] = 0x80;
    uuid::Uuid::from_bytes(id)
}

/// `v` as JSON text, for stores that keep JSON as the text it was
/// written as.
pub fn encode_json<T: serde::Serialize>(op: &'static str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::corrupt(op, format!("cannot encode: {e}")))
}

/// Decodes JSON text a store kept; `Corrupt`, naming `what`, if it does
/// not decode.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    op: &'static str,
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(op, format!("stored {what} does not decode: {e}")))
}

/// Rebuilds [`AuditEntry`]s from stored audit rows, for stores that keep
/// each entry's sequence number, record and hash but not the previous
/// hash (it is the previous row's). Feed it the rows with `seq >= after`
/// in order, at most `limit + 1` of them: the row at `after` only lends
/// its hash.
#[derive(Debug)]
pub struct AuditRows {
    after: u64,
    limit: usize,
    prev: String,
    entries: Vec<AuditEntry>,
}

impl AuditRows {
    /// Entries after `after`, at most `limit`.
    pub fn new(after: u64, limit: usize) -> Self {
        Self {
            after,
            limit,
            prev: crate::audit::GENESIS_HASH.to_owned(),
            entries: Vec::new(),
        }
    }

    /// One stored row; `record` is read only for rows that become entries.
    pub fn push<'r>(
        &mut self,
        seq: u64,
        record: impl FnOnce() -> Result<&'r str, StoreError>,
        hash: String,
    ) -> Result<(), StoreError> {
        if seq > self.after && self.entries.len() < self.limit {
            let record: AuditRecord = decode_json("audit_entries", "audit record", record()?)?;
            self.entries.push(AuditEntry {
                seq,
                record,
                prev_hash: std::mem::replace(&mut self.prev, hash.clone()),
                hash,
            });
        } else {
            self.prev = hash;
        }
        Ok(())
    }

    /// The entries.
    pub fn finish(self) -> Vec<AuditEntry> {
        self.entries
    }
}

/// How often a waiter reads the store again when nothing it waits for was
/// announced: a backend that cannot tell which execution another process
/// changed still wakes it, and one that says nothing is still seen.
pub(crate) const WAIT_SAFETY_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// After missing announcements, how soon a waiter reads again.
const LAGGED_READ_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits until `changes` announces something about `id` (or a change it
/// cannot attribute), the safety poll passes, or `deadline`; unrelated
/// changes do not wake the waiter, so a waiting caller reads the store
/// about once a second, not once per change elsewhere.
pub(crate) async fn next_change(
    changes: &mut broadcast::Receiver<Change>,
    id: ExecutionId,
    deadline: tokio::time::Instant,
) {
    let poll =
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + WAIT_SAFETY_POLL));
    tokio::pin!(poll);
    loop {
        tokio::select! {
            () = &mut poll => return,
            got = changes.recv() => match got {
                Ok(change) if change.id == id || change.id.as_uuid().is_nil() => return,
                Ok(_) => {}
                // Missed some: any could be ours. Read soon, but not at
                // every lag of an overloaded channel (20 reads/s at most).
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let soon = tokio::time::Instant::now() + LAGGED_READ_AFTER;
                    if soon < poll.deadline() {
                        poll.as_mut().reset(soon);
                    }
                }
                // Nothing more will be announced: the poll decides.
                Err(broadcast::error::RecvError::Closed) => {
                    poll.as_mut().await;
                    return;
                }
            },
        }
    }
}

/// Capacity of the change broadcast used by the built-in stores.
pub const WATCH_CAPACITY: usize = 1024;

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn create(&self, creation: &Creation) -> Result<(), StoreError> {
        (**self).create(creation).await
    }
    async fn transition(&self, transition: &Transition) -> Result<(), StoreError> {
        (**self).transition(transition).await
    }
    fn create_in_place(&self, creation: &mut Creation) -> Option<Result<(), StoreError>> {
        (**self).create_in_place(creation)
    }
    fn transition_in_place(&self, transition: &mut Transition) -> Option<Result<(), StoreError>> {
        (**self).transition_in_place(transition)
    }
    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        (**self).execution(id).await
    }
    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, StoreError> {
        (**self).executions(query).await
    }
    async fn count_executions(&self, query: &ExecutionQuery) -> Result<u64, StoreError> {
        (**self).count_executions(query).await
    }
    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError> {
        (**self).snapshots(id).await
    }
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        (**self).events(query).await
    }
    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        (**self).audit_entries(after, limit).await
    }
    async fn claim(
        &self,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        (**self).claim(status, owner, lease, limit, actions).await
    }
    async fn claim_abandoned(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        (**self).claim_abandoned(owner, lease, limit, actions).await
    }
    async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        (**self).renew_lease(id, owner, lease).await
    }
    async fn release_lease(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError> {
        (**self).release_lease(id, owner).await
    }
    fn watch(&self) -> broadcast::Receiver<Change> {
        (**self).watch()
    }
    async fn put_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        (**self).put_grant(grant).await
    }
    async fn grants(
        &self,
        action: &str,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        (**self).grants(action, principal, now).await
    }
    async fn valid_grants(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Grant>, StoreError> {
        (**self).valid_grants(now, limit).await
    }
    async fn remove_grant(&self, id: uuid::Uuid) -> Result<Option<Grant>, StoreError> {
        (**self).remove_grant(id).await
    }
    async fn put_pause(&self, pause: &Pause) -> Result<(), StoreError> {
        (**self).put_pause(pause).await
    }
    async fn remove_pause(&self, key: &str) -> Result<bool, StoreError> {
        (**self).remove_pause(key).await
    }
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        (**self).pauses().await
    }
    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        (**self).claim_notifications(owner, now, lease, limit).await
    }
    async fn finish_notification(
        &self,
        notification: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        (**self).finish_notification(notification, owner, now).await
    }
    async fn notifications(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        (**self).notifications(query).await
    }
    async fn retry_notification(
        &self,
        id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        (**self).retry_notification(id, now).await
    }
}
