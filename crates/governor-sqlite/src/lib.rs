//! A governor [`Store`] on one SQLite file: the embedded default.
//!
//! Writes go to a single writer thread; writes that arrive together share
//! one transaction and one `fsync` (group commit), so many concurrent
//! governed calls are durable without paying one disk flush each. Reads
//! run on a small pool of connections in parallel with writes (WAL).
//!
//! ```
//! use governor_core::{Args, Governor, GovernError};
//! use governor_sqlite::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("governor.db")).await?;
//! let governor = Governor::builder().store(store).build()?;
//! let action = governor.action("hello").build()?;
//! let out: String = action.run(Args::new().arg("name", "world"), || async {
//!     Ok::<_, GovernError>("hi".to_string())
//! }).await?;
//! assert_eq!(out, "hi");
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod codec;
mod error;
mod outbox;
mod schema;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor_core::store::{AuditRows, EventQuery, ExecutionQuery, WATCH_CAPACITY, first_id_at};
use governor_core::{
    AuditEntry, Change, Checkpoint, Creation, Event, Execution, ExecutionId, ExecutionStatus,
    Grant, Json, Notification, NotificationQuery, Pause, Snapshot, Store, StoreError,
    StoreErrorKind, Transition,
};
use rusqlite::{Connection, OpenFlags, params, params_from_iter, types::Value as SqlValue};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::codec::{
    EVENT_COLUMNS, EXECUTION_COLUMNS, blob, event, execution, from_nanos, to_nanos,
};
use crate::error::{closed, map, no_thread};
pub use crate::schema::SCHEMA_VERSION;
use crate::writer::{Done, Job, Op};

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: a committed write survives power loss.
    #[default]
    Full,
    /// `synchronous = NORMAL`: survives a process crash; the last commits
    /// may be lost on power loss. Faster.
    Normal,
}

/// Settings for [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteOptions {
    durability: Durability,
    busy_timeout: Duration,
    readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
        }
    }
}

impl SqliteOptions {
    /// Default options: full durability, 5 s busy timeout, 4 readers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long to wait for another process's lock before failing with
    /// an `Unavailable` error.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Read connections kept open.
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }
}

struct Readers {
    path: PathBuf,
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(c);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| map("open", e))?;
        conn.busy_timeout(self.options.busy_timeout)
            .map_err(|e| map("open", e))?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.options.readers
        {
            idle.push(conn);
        }
    }
}

/// The SQLite store. Cheap to share behind an `Arc`; dropping the last
/// handle stops its writer thread after pending writes are committed.
pub struct SqliteStore {
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Readers>,
    changes: broadcast::Sender<Change>,
    /// Keeps the watcher thread running while the store exists.
    _alive: Arc<()>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default
    /// options, applying migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database at `path` with `options`.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let (conn, checkpoints) = {
            let path = path.clone();
            let options = options.clone();
            tokio::task::spawn_blocking(move || open_writer(&path, &options))
                .await
                .map_err(|e| StoreError::new(StoreErrorKind::Other, "open", e.to_string()))??
        };
        let (changes, _) = broadcast::channel(WATCH_CAPACITY);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer = writer::spawn(conn, checkpoints, changes.clone(), Arc::clone(&commits))
            .map_err(no_thread)?;
        let alive = Arc::new(());
        watch::spawn(
            path.clone(),
            changes.clone(),
            commits,
            Arc::downgrade(&alive),
        )
        .map_err(no_thread)?;
        Ok(Self {
            writer,
            readers: Arc::new(Readers {
                path,
                options,
                idle: Mutex::new(Vec::new()),
            }),
            changes,
            _alive: alive,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.readers.path
    }

    async fn write(&self, op: Op, name: &'static str) -> Result<Done, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { op, reply })
            .map_err(|_| closed(name))?;
        let (result, _written) = rx.await.map_err(|_| closed(name))?;
        result
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn);
            readers.give_back(conn);
            out
        })
        .await
        .map_err(|e| StoreError::new(StoreErrorKind::Other, "read", e.to_string()))?
    }
}

/// Creates the database file readable and writable by its owner only
/// (0600), unless it exists. SQLite gives the WAL and shared-memory files
/// the database file's permissions, so they are private too: the file
/// holds arguments, decisions and the audit trail.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "open",
            format!("cannot create {}: {e}", path.display()),
        )),
    }
}

fn open_writer(
    path: &Path,
    options: &SqliteOptions,
) -> Result<(Connection, checkpoint::Checkpoints), StoreError> {
    if path != Path::new(":memory:") && !path.as_os_str().is_empty() {
        create_private(path)?;
    }
    let mut conn = Connection::open(path).map_err(|e| map("open", e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| map("open", e))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| map("open", e))?;
    let sync = match options.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(|e| map("open", e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| map("open", e))?;
    // Each write of a batch runs in a savepoint, and a savepoint's journal
    // goes to a temporary file by default: a write call per page touched,
    // six times the WAL's own (perf stat: 144,856 pwrites against 22,125
    // over the same 6,100 calls). Durability is the WAL's, not this
    // journal's, so it can live in memory.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(|e| map("open", e))?;
    conn.set_prepared_statement_cache_capacity(64);
    schema::migrate(&mut conn)?;
    let checkpoints =
        checkpoint::offload(&mut conn, path.to_path_buf(), sync, options.busy_timeout)?;
    Ok((conn, checkpoints))
}

/// [`first_id_at`] as a blob.
fn id_at_ms(t: chrono::DateTime<chrono::Utc>, slack_ms: i64) -> Vec<u8> {
    first_id_at(t, slack_ms).as_bytes().to_vec()
}

/// The conditions of `query` (to follow `WHERE 1 = 1`) and their
/// parameters.
fn execution_filter(query: &ExecutionQuery) -> (String, Vec<SqlValue>) {
    let mut sql = String::new();
    let mut params: Vec<SqlValue> = Vec::new();
    if !query.statuses.is_empty() {
        let marks = vec!["?"; query.statuses.len()].join(", ");
        sql.push_str(&format!(" AND status IN ({marks})"));
        params.extend(
            query
                .statuses
                .iter()
                .map(|s| SqlValue::Text(s.as_str().into())),
        );
    }
    let mut filter = |clause: &str, v: Option<SqlValue>| {
        if let Some(v) = v {
            sql.push_str(clause);
            params.push(v);
        }
    };
    filter(" AND action = ?", query.action.clone().map(SqlValue::Text));
    filter(
        " AND principal_id = ?",
        query.principal.clone().map(SqlValue::Text),
    );
    // Ids are time-ordered, so a time range is also an id range the
    // primary key can seek; `created_at` keeps the bound exact.
    filter(
        " AND id >= ?",
        query.since.map(|t| SqlValue::Blob(id_at_ms(t, -1_000))),
    );
    filter(
        " AND created_at >= ?",
        query.since.map(|t| SqlValue::Integer(to_nanos(t))),
    );
    filter(
        " AND id < ?",
        query.until.map(|t| SqlValue::Blob(id_at_ms(t, 1_000))),
    );
    filter(
        " AND created_at < ?",
        query.until.map(|t| SqlValue::Integer(to_nanos(t))),
    );
    filter(
        " AND id < ?",
        query.before.map(|b| SqlValue::Blob(blob(b.as_uuid()))),
    );
    (sql, params)
}

fn notifications(done: Done) -> Result<Vec<Notification>, StoreError> {
    match done {
        Done::Notifications(n) => Ok(n),
        _ => Err(StoreError::new(
            StoreErrorKind::Other,
            "outbox",
            "unexpected reply",
        )),
    }
}

fn unit(done: Done) -> Result<(), StoreError> {
    match done {
        Done::Unit => Ok(()),
        Done::Claimed(_) | Done::Removed(_) | Done::RemovedGrant(_) | Done::Notifications(_) => {
            Err(StoreError::new(
                StoreErrorKind::Other,
                "write",
                "unexpected reply",
            ))
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, creation: &Creation) -> Result<(), StoreError> {
        unit(
            self.write(writer::encode_creation(creation)?, "create")
                .await?,
        )
    }

    async fn transition(&self, transition: &Transition) -> Result<(), StoreError> {
        unit(
            self.write(writer::encode_transition(transition)?, "transition")
                .await?,
        )
    }

    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        self.read(move |c| {
            let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
            let mut stmt = c.prepare_cached(&sql).map_err(|e| map("execution", e))?;
            let mut rows = stmt
                .query([blob(id.as_uuid())])
                .map_err(|e| map("execution", e))?;
            match rows.next().map_err(|e| map("execution", e))? {
                Some(row) => execution("execution", row).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, StoreError> {
        let (conditions, params) = execution_filter(query);
        let limit = query.effective_limit();
        self.read(move |c| {
            let sql = format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE 1 = 1{conditions} ORDER BY id DESC LIMIT {limit}"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(|e| map("executions", e))?;
            let mut rows = stmt
                .query(params_from_iter(params))
                .map_err(|e| map("executions", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| map("executions", e))? {
                out.push(execution("executions", row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn count_executions(&self, query: &ExecutionQuery) -> Result<u64, StoreError> {
        const OP: &str = "count_executions";
        let (conditions, params) = execution_filter(query);
        self.read(move |c| {
            let sql = format!("SELECT count(*) FROM executions WHERE 1 = 1{conditions}");
            let mut stmt = c.prepare_cached(&sql).map_err(|e| map(OP, e))?;
            let count: i64 = stmt
                .query_row(params_from_iter(params), |r| r.get(0))
                .map_err(|e| map(OP, e))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError> {
        self.read(move |c| {
            const OP: &str = "snapshots";
            let mut stmt = c
                .prepare_cached(
                    "SELECT checkpoint, captured_at, state FROM snapshots WHERE execution_id = ?1 ORDER BY captured_at, checkpoint = 'post_execution'",
                )
                .map_err(|e| map(OP, e))?;
            let mut rows = stmt.query([blob(id.as_uuid())]).map_err(|e| map(OP, e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
                let checkpoint: String = row.get(0).map_err(|e| map(OP, e))?;
                let at: i64 = row.get(1).map_err(|e| map(OP, e))?;
                let state: String = row.get(2).map_err(|e| map(OP, e))?;
                out.push(Snapshot {
                    execution_id: id,
                    checkpoint: checkpoint.parse::<Checkpoint>().map_err(|e| StoreError::corrupt(OP, e))?,
                    captured_at: from_nanos(at),
                    state: Json::parse(&state).map_err(|e| StoreError::corrupt(OP, e))?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let query = query.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events e JOIN executions x ON x.id = e.execution_id WHERE 1 = 1");
            let mut params: Vec<SqlValue> = Vec::new();
            if let Some(id) = query.execution_id {
                sql.push_str(" AND e.execution_id = ?");
                params.push(SqlValue::Blob(blob(id.as_uuid())));
            }
            if !query.kinds.is_empty() {
                let marks = vec!["?"; query.kinds.len()].join(", ");
                sql.push_str(&format!(" AND e.kind IN ({marks})"));
                params.extend(
                    query
                        .kinds
                        .iter()
                        .map(|k| SqlValue::Text(k.as_str().into())),
                );
            }
            if let Some(after) = query.after {
                sql.push_str(" AND e.id > ?");
                params.push(SqlValue::Blob(blob(after)));
            }
            sql.push_str(&format!(" ORDER BY e.id LIMIT {}", query.effective_limit()));
            let mut stmt = c.prepare_cached(&sql).map_err(|e| map("events", e))?;
            let mut rows = stmt
                .query(params_from_iter(params))
                .map_err(|e| map("events", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| map("events", e))? {
                out.push(event("events", row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| {
            const OP: &str = "audit_entries";
            // The entry at `after` is read too: its hash is the next one's
            // `prev_hash`, which is not stored twice.
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, record, hash FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(|e| map(OP, e))?;
            let limit = limit.min(100_000) as i64;
            let mut rows = stmt
                .query([after as i64, limit + 1])
                .map_err(|e| map(OP, e))?;
            let mut entries = AuditRows::new(after, limit as usize);
            while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
                let seq: i64 = row.get(0).map_err(|e| map(OP, e))?;
                let record = || {
                    row.get_ref(1)
                        .and_then(|v| Ok(v.as_str()?))
                        .map_err(|e| map(OP, e))
                };
                entries.push(seq as u64, record, row.get(2).map_err(|e| map(OP, e))?)?;
            }
            Ok(entries.finish())
        })
        .await
    }

    async fn claim(
        &self,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        let op = Op::Claim {
            status,
            owner: owner.to_owned(),
            lease,
            limit,
            abandoned: false,
            actions: actions
                .map(|a| codec::encode_json("claim", &a))
                .transpose()?,
        };
        match self.write(op, "claim").await? {
            Done::Claimed(v) => Ok(v),
            Done::Unit | Done::Removed(_) | Done::RemovedGrant(_) | Done::Notifications(_) => {
                Ok(Vec::new())
            }
        }
    }

    async fn claim_abandoned(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        let op = Op::Claim {
            status: ExecutionStatus::Running,
            owner: owner.to_owned(),
            lease,
            limit,
            abandoned: true,
            actions: actions
                .map(|a| codec::encode_json("claim_abandoned", &a))
                .transpose()?,
        };
        match self.write(op, "claim_abandoned").await? {
            Done::Claimed(v) => Ok(v),
            Done::Unit | Done::Removed(_) | Done::RemovedGrant(_) | Done::Notifications(_) => {
                Ok(Vec::new())
            }
        }
    }

    async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        unit(
            self.write(
                Op::Renew {
                    id,
                    owner: owner.to_owned(),
                    lease,
                },
                "renew_lease",
            )
            .await?,
        )
    }

    async fn release_lease(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError> {
        unit(
            self.write(
                Op::Release {
                    id,
                    owner: owner.to_owned(),
                },
                "release_lease",
            )
            .await?,
        )
    }

    fn watch(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn put_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        let op = Op::PutGrant {
            id: blob(grant.id),
            action: grant.action.clone(),
            principal: grant.principal.clone(),
            json: codec::encode_json("put_grant", grant)?,
            until: to_nanos(grant.until),
        };
        unit(self.write(op, "put_grant").await?)
    }

    async fn grants(
        &self,
        action: &str,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        let (action, principal) = (action.to_owned(), principal.to_owned());
        self.read(move |c| {
            const OP: &str = "grants";
            let mut stmt = c
                .prepare_cached("SELECT grant_json FROM grants WHERE action = ?1 AND principal_id = ?2 AND until > ?3")
                .map_err(|e| map(OP, e))?;
            let mut rows = stmt.query(params![action, principal, to_nanos(now)]).map_err(|e| map(OP, e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
                let text: String = row.get(0).map_err(|e| map(OP, e))?;
                out.push(serde_json::from_str(&text).map_err(|e| StoreError::corrupt(OP, format!("grant: {e}")))?);
            }
            Ok(out)
        })
        .await
    }

    async fn valid_grants(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Grant>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            const OP: &str = "valid_grants";
            let mut stmt = c
                .prepare_cached(
                    "SELECT grant_json FROM grants WHERE until > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(|e| map(OP, e))?;
            let mut rows = stmt
                .query(params![to_nanos(now), limit])
                .map_err(|e| map(OP, e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
                let text: String = row.get(0).map_err(|e| map(OP, e))?;
                out.push(
                    serde_json::from_str(&text)
                        .map_err(|e| StoreError::corrupt(OP, format!("grant: {e}")))?,
                );
            }
            Ok(out)
        })
        .await
    }

    async fn remove_grant(&self, id: uuid::Uuid) -> Result<Option<Grant>, StoreError> {
        const OP: &str = "remove_grant";
        match self.write(Op::RemoveGrant { id: blob(id) }, OP).await? {
            Done::RemovedGrant(None) => Ok(None),
            Done::RemovedGrant(Some(text)) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError::corrupt(OP, format!("grant: {e}"))),
            _ => Err(StoreError::new(
                StoreErrorKind::Other,
                OP,
                "unexpected reply",
            )),
        }
    }

    async fn put_pause(&self, pause: &Pause) -> Result<(), StoreError> {
        let op = Op::PutPause {
            scope: pause.key().to_owned(),
            json: codec::encode_json("put_pause", pause)?,
        };
        unit(self.write(op, "put_pause").await?)
    }

    async fn remove_pause(&self, key: &str) -> Result<bool, StoreError> {
        let op = Op::RemovePause {
            scope: key.to_owned(),
        };
        match self.write(op, "remove_pause").await? {
            Done::Removed(removed) => Ok(removed),
            _ => Err(StoreError::new(
                StoreErrorKind::Other,
                "remove_pause",
                "unexpected reply",
            )),
        }
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.read(|c| {
            const OP: &str = "pauses";
            let mut stmt = c
                .prepare_cached("SELECT pause_json FROM pauses")
                .map_err(|e| map(OP, e))?;
            let mut rows = stmt.query([]).map_err(|e| map(OP, e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
                let text: String = row.get(0).map_err(|e| map(OP, e))?;
                out.push(
                    serde_json::from_str(&text)
                        .map_err(|e| StoreError::corrupt(OP, format!("pause: {e}")))?,
                );
            }
            Ok(out)
        })
        .await
    }

    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let op = Op::ClaimNotifications {
            owner: owner.to_owned(),
            now: to_nanos(now),
            until: to_nanos(governor_core::store::lease_until(now, lease)),
            limit,
        };
        notifications(self.write(op, "claim_notifications").await?)
    }

    async fn finish_notification(
        &self,
        notification: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "finish_notification";
        let op = Op::FinishNotification {
            next: Box::new(crate::outbox::encode(OP, notification)?),
            owner: owner.to_owned(),
            now: to_nanos(now),
        };
        match self.write(op, OP).await? {
            Done::Removed(done) => Ok(done),
            _ => Err(StoreError::new(
                StoreErrorKind::Other,
                OP,
                "unexpected reply",
            )),
        }
    }

    async fn notifications(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        let query = query.clone();
        self.read(move |c| crate::outbox::list(c, &query)).await
    }

    async fn retry_notification(
        &self,
        id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        let op = Op::RetryNotification { id, now };
        Ok(notifications(self.write(op, "retry_notification").await?)?
            .into_iter()
            .next())
    }
}

/// The crate README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
