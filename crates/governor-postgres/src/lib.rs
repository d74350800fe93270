//! A governor [`Store`] on PostgreSQL: the store for several instances.
//!
//! Any number of processes (applications, `governor serve` replicas,
//! resume workers) share one database:
//!
//! - writes that arrive together in one process share one transaction,
//!   with one statement per kind of row (group commit);
//! - work is claimed with row leases (`FOR UPDATE SKIP LOCKED` plus a
//!   lease deadline), and every status change is conditional, so no
//!   execution completes twice;
//! - each commit sends a `NOTIFY`, and every store handle `LISTEN`s, so a
//!   decision made on one instance wakes the caller waiting on another.
//!
//! Everything lives in one PostgreSQL schema (default `governor`),
//! created and migrated when the store opens.
//!
//! ```no_run
//! use governor_core::Governor;
//! use governor_postgres::{PostgresOptions, PostgresStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect_with(
//!     "postgres://governor@db.internal/governor",
//!     PostgresOptions::new().schema("governor"),
//! )
//! .await?;
//! let governor = Governor::builder().store(store).build()?;
//! # let _ = governor;
//! # Ok(())
//! # }
//! ```

mod codec;
mod conn;
mod error;
mod notify;
mod outbox;
mod rate_limit;
mod schema;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor_core::store::{
    AuditRows, EventQuery, ExecutionQuery, WATCH_CAPACITY, first_id_at, lease_until,
};
use governor_core::{
    AuditEntry, Change, Checkpoint, Creation, Event, Execution, ExecutionId, ExecutionStatus,
    Grant, Json, Notification, NotificationQuery, Pause, Snapshot, Store, StoreError, Transition,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::codec::{
    EVENT_COLUMNS, EXECUTION_COLUMNS, decode_json, encode_json, event, execution, from_nanos, get,
    to_nanos,
};
use crate::conn::{Conn, Endpoint, Pool};
use crate::error::{closed, map};
pub use crate::rate_limit::PostgresRateLimiter;
pub use crate::schema::SCHEMA_VERSION;
use crate::writer::Job;

/// Settings for [`PostgresStore::connect_with`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresOptions {
    schema: String,
    pool_size: usize,
    writers: usize,
    migrate: bool,
    tls_roots: Vec<Vec<u8>>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "governor".into(),
            pool_size: 4,
            writers: 1,
            migrate: true,
            tls_roots: Vec::new(),
        }
    }
}

impl PostgresOptions {
    /// Defaults: schema `governor`, 4 read connections, 1 writer
    /// connection, migrate on open.
    pub fn new() -> Self {
        Self::default()
    }

    /// The PostgreSQL schema holding governor's tables: lower-case letters,
    /// digits and `_`, at most 48 characters.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Connections kept for reads, claims and leases (writes have their
    /// own). Each pipelines concurrent queries.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Connections that commit writes (default 1). Writes arriving
    /// together share a transaction; with more than one writer, one batch
    /// commits while the next is collected. More writers raise one
    /// instance's throughput, but when many instances chain audit records
    /// their smaller batches queue on the audit chain's lock instead
    /// (BENCHMARKS.md has both).
    pub fn writers(mut self, writers: usize) -> Self {
        self.writers = writers.max(1);
        self
    }

    /// Also trusts the certificates in `pem` (PEM text, such as a private
    /// CA's or a self-signed server's) when the URL asks for TLS with
    /// `sslmode=require`. TLS always verifies the server's certificate and
    /// host name; the web PKI roots are trusted too.
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_roots.push(pem.into());
        self
    }

    /// Whether opening applies pending migrations (default) or only
    /// checks that the schema is current (for deployments that migrate
    /// with `governor migrate` before rolling out).
    pub fn migrate_on_open(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PostgresStore {
    writer: mpsc::UnboundedSender<Job>,
    pool: Arc<Pool>,
    schema: String,
    changes: broadcast::Sender<Change>,
    /// Keeps the listener running while the store exists.
    _alive: Arc<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects with default options, applying migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        schema::check_name(&options.schema)?;
        let endpoint = Endpoint::new(url, &options.tls_roots)?;
        let writer_conn = Conn::open(&endpoint, &options.schema).await?;
        if options.migrate {
            schema::migrate(writer_conn.client(), &options.schema).await?;
        } else {
            schema::check_current(writer_conn.client()).await?;
        }
        let mut writer_conns = vec![writer_conn];
        for _ in 1..options.writers {
            writer_conns.push(Conn::open(&endpoint, &options.schema).await?);
        }
        let pool = Arc::new(Pool::open(&endpoint, &options.schema, options.pool_size).await?);
        let (changes, _) = broadcast::channel(WATCH_CAPACITY);
        let instance = Uuid::now_v7().simple().to_string();
        let alive = Arc::new(());
        notify::spawn(
            endpoint.clone(),
            options.schema.clone(),
            instance.clone(),
            changes.clone(),
            Arc::downgrade(&alive),
        );
        let writer = writer::spawn(
            writer_conns,
            writer::Target {
                endpoint,
                schema: options.schema.clone(),
                instance,
                changes: changes.clone(),
            },
        );
        Ok(Self {
            writer,
            pool,
            schema: options.schema,
            changes,
            _alive: alive,
        })
    }

    /// Applies pending migrations to `schema` without opening a store;
    /// returns how many were applied.
    pub async fn migrate(url: &str, schema: &str) -> Result<i64, StoreError> {
        schema::check_name(schema)?;
        let conn = Conn::open(&Endpoint::new(url, &[])?, schema).await?;
        schema::migrate(conn.client(), schema).await
    }

    /// The PostgreSQL schema in use.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A rate limiter sharing this store's database and schema.
    pub fn rate_limiter(&self) -> PostgresRateLimiter {
        PostgresRateLimiter::new(Arc::clone(&self.pool))
    }

    async fn write(&self, op: writer::Op, name: &'static str) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { op, reply })
            .map_err(|_| closed(name))?;
        rx.await.map_err(|_| closed(name))?
    }

    async fn query(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let conn = self.pool.get().await?;
        let stmt = conn.statement(op, sql).await?;
        conn.client()
            .query(&stmt, params)
            .await
            .map_err(|e| map(op, e))
    }

    #[allow(clippy::too_many_arguments)]
    async fn claim_where(
        &self,
        op: &'static str,
        lapsed: &str,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        let now = Utc::now();
        let sql = format!(
            "UPDATE executions SET lease_owner = $1, lease_until = $2 WHERE id IN (\
               SELECT id FROM executions WHERE status = $3 AND {lapsed} \
               AND ($6::text[] IS NULL OR action = ANY($6)) \
               ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED) RETURNING {EXECUTION_COLUMNS}"
        );
        let actions: Option<Vec<&str>> = actions.map(<[&str]>::to_vec);
        let rows = self
            .query(
                op,
                &sql,
                &[
                    &owner,
                    &to_nanos(lease_until(now, lease)),
                    &status.as_str(),
                    &to_nanos(now),
                    &(limit.min(10_000) as i64),
                    &actions,
                ],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| execution(op, r))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// Extends (`Some`) or gives up (`None`) a lease `owner` holds.
    async fn set_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Option<Duration>,
    ) -> Result<(), StoreError> {
        let op = if lease.is_some() {
            "renew_lease"
        } else {
            "release_lease"
        };
        let now = Utc::now();
        let until = lease.map(|l| to_nanos(lease_until(now, l)));
        let rows = self
            .query(
                op,
                "UPDATE executions SET lease_until = $3, \
                 lease_owner = CASE WHEN $3::bigint IS NULL THEN NULL ELSE lease_owner END \
                 WHERE id = $1 AND lease_owner = $2 AND lease_until > $4 RETURNING id",
                &[&id.as_uuid(), &owner, &until, &to_nanos(now)],
            )
            .await?;
        if !rows.is_empty() {
            return Ok(());
        }
        let exists = self
            .query(
                op,
                "SELECT 1 FROM executions WHERE id = $1",
                &[&id.as_uuid()],
            )
            .await?;
        Err(if exists.is_empty() {
            StoreError::not_found(op, format!("execution {id} does not exist"))
        } else {
            StoreError::conflict(op, format!("lease on {id} is not held by `{owner}`"))
        })
    }
}

/// Builds a statement's `WHERE` clauses and their numbered parameters.
#[derive(Default)]
struct Filter {
    sql: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filter {
    fn add<T: ToSql + Sync + Send + 'static>(&mut self, clause: &str, value: T) {
        self.params.push(Box::new(value));
        let n = self.params.len();
        self.sql.push_str(&clause.replace('?', &format!("${n}")));
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create(&self, creation: &Creation) -> Result<(), StoreError> {
        self.write(writer::encode_creation(creation)?, "create")
            .await
    }

    async fn transition(&self, transition: &Transition) -> Result<(), StoreError> {
        self.write(writer::encode_transition(transition)?, "transition")
            .await
    }

    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        const OP: &str = "execution";
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        let rows = self.query(OP, &sql, &[&id.as_uuid()]).await?;
        rows.first().map(|r| execution(OP, r)).transpose()
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, StoreError> {
        const OP: &str = "executions";
        let f = execution_filter(query);
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE true{} ORDER BY id DESC LIMIT {}",
            f.sql,
            query.effective_limit()
        );
        let rows = self.query(OP, &sql, &f.refs()).await?;
        rows.iter().map(|r| execution(OP, r)).collect()
    }

    async fn count_executions(&self, query: &ExecutionQuery) -> Result<u64, StoreError> {
        const OP: &str = "count_executions";
        let f = execution_filter(query);
        let sql = format!("SELECT count(*) FROM executions WHERE true{}", f.sql);
        let rows = self.query(OP, &sql, &f.refs()).await?;
        let count: i64 = match rows.first() {
            Some(r) => get(OP, r, 0)?,
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError> {
        const OP: &str = "snapshots";
        let rows = self
            .query(
                OP,
                "SELECT checkpoint, captured_at, state FROM snapshots WHERE execution_id = $1 \
                 ORDER BY captured_at, checkpoint = 'post_execution'",
                &[&id.as_uuid()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Snapshot {
                    execution_id: id,
                    checkpoint: get::<&str>(OP, row, 0)?
                        .parse::<Checkpoint>()
                        .map_err(|e| StoreError::corrupt(OP, e))?,
                    captured_at: from_nanos(get(OP, row, 1)?),
                    state: Json::parse(get::<&str>(OP, row, 2)?)
                        .map_err(|e| StoreError::corrupt(OP, e))?,
                })
            })
            .collect()
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        const OP: &str = "events";
        let mut f = Filter::default();
        if let Some(id) = query.execution_id {
            f.add(" AND e.execution_id = ?", id.as_uuid());
        }
        if !query.kinds.is_empty() {
            let kinds: Vec<String> = query.kinds.iter().map(|k| k.as_str().to_owned()).collect();
            f.add(" AND e.kind = ANY(?)", kinds);
        }
        if let Some(after) = query.after {
            f.add(" AND e.id > ?", after);
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e JOIN executions x ON x.id = e.execution_id \
             WHERE true{} ORDER BY e.id LIMIT {}",
            f.sql,
            query.effective_limit()
        );
        let rows = self.query(OP, &sql, &f.refs()).await?;
        rows.iter().map(|r| event(OP, r)).collect()
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        const OP: &str = "audit_entries";
        // The entry at `after` is read too: its hash is the next one's
        // `prev_hash`, which is not stored twice.
        let limit = limit.min(100_000);
        let from = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self
            .query(
                OP,
                "SELECT seq, record, hash FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[&from, &(limit as i64 + 1)],
            )
            .await?;
        let mut entries = AuditRows::new(after, limit);
        for row in &rows {
            let seq = u64::try_from(get::<i64>(OP, row, 0)?).unwrap_or(0);
            entries.push(seq, || get::<&str>(OP, row, 1), get(OP, row, 2)?)?;
        }
        Ok(entries.finish())
    }

    async fn claim(
        &self,
        status: ExecutionStatus,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        // Free work has no lease or a lapsed one.
        let lapsed = "(lease_until IS NULL OR lease_until <= $4)";
        self.claim_where("claim", lapsed, status, owner, lease, limit, actions)
            .await
    }

    async fn claim_abandoned(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        // Abandoned work had a lease that lapsed.
        let lapsed = "lease_until IS NOT NULL AND lease_until <= $4";
        self.claim_where(
            "claim_abandoned",
            lapsed,
            ExecutionStatus::Running,
            owner,
            lease,
            limit,
            actions,
        )
        .await
    }

    async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.set_lease(id, owner, Some(lease)).await
    }

    async fn release_lease(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError> {
        self.set_lease(id, owner, None).await
    }

    fn watch(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn put_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        const OP: &str = "put_grant";
        self.query(
            OP,
            "INSERT INTO grants (id, action, principal_id, grant_json, until) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &grant.id,
                &grant.action,
                &grant.principal,
                &encode_json(OP, grant)?,
                &to_nanos(grant.until),
            ],
        )
        .await
        .map(drop)
    }

    async fn grants(
        &self,
        action: &str,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        const OP: &str = "grants";
        let rows = self
            .query(
                OP,
                "SELECT grant_json FROM grants WHERE action = $1 AND principal_id = $2 AND until > $3",
                &[&action, &principal, &to_nanos(now)],
            )
            .await?;
        rows.iter()
            .map(|r| decode_json(OP, "grant", get(OP, r, 0)?))
            .collect()
    }

    async fn valid_grants(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Grant>, StoreError> {
        const OP: &str = "valid_grants";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                OP,
                "SELECT grant_json FROM grants WHERE until > $1 ORDER BY id LIMIT $2",
                &[&to_nanos(now), &limit],
            )
            .await?;
        rows.iter()
            .map(|r| decode_json(OP, "grant", get(OP, r, 0)?))
            .collect()
    }

    async fn remove_grant(&self, id: uuid::Uuid) -> Result<Option<Grant>, StoreError> {
        const OP: &str = "remove_grant";
        let rows = self
            .query(
                OP,
                "DELETE FROM grants WHERE id = $1 RETURNING grant_json",
                &[&id],
            )
            .await?;
        rows.first()
            .map(|r| decode_json(OP, "grant", get(OP, r, 0)?))
            .transpose()
    }

    async fn put_pause(&self, pause: &Pause) -> Result<(), StoreError> {
        const OP: &str = "put_pause";
        self.query(
            OP,
            "INSERT INTO pauses (scope, pause_json) VALUES ($1, $2) \
             ON CONFLICT (scope) DO UPDATE SET pause_json = excluded.pause_json",
            &[&pause.key(), &encode_json(OP, pause)?],
        )
        .await
        .map(drop)
    }

    async fn remove_pause(&self, key: &str) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "remove_pause",
                "DELETE FROM pauses WHERE scope = $1 RETURNING scope",
                &[&key],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        const OP: &str = "pauses";
        let rows = self.query(OP, "SELECT pause_json FROM pauses", &[]).await?;
        rows.iter()
            .map(|r| decode_json(OP, "pause", get(OP, r, 0)?))
            .collect()
    }

    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        self.claim_outbox(owner, now, lease, limit).await
    }

    async fn finish_notification(
        &self,
        notification: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.finish_outbox(notification, owner, now).await
    }

    async fn notifications(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        self.list_outbox(query).await
    }

    async fn retry_notification(
        &self,
        id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        self.retry_outbox(id, now).await
    }
}

/// The conditions of `query` (to follow `WHERE true`).
fn execution_filter(query: &ExecutionQuery) -> Filter {
    let mut f = Filter::default();
    if !query.statuses.is_empty() {
        let statuses: Vec<String> = query
            .statuses
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        f.add(" AND status = ANY(?)", statuses);
    }
    if let Some(a) = &query.action {
        f.add(" AND action = ?", a.clone());
    }
    if let Some(p) = &query.principal {
        f.add(" AND principal_id = ?", p.clone());
    }
    // Ids are time-ordered, so a time range is also an id range the
    // primary key can seek; `created_at` keeps the bound exact.
    if let Some(t) = query.since {
        f.add(" AND id >= ?", first_id_at(t, -1_000));
        f.add(" AND created_at >= ?", to_nanos(t));
    }
    if let Some(t) = query.until {
        f.add(" AND id < ?", first_id_at(t, 1_000));
        f.add(" AND created_at < ?", to_nanos(t));
    }
    if let Some(b) = query.before {
        f.add(" AND id < ?", b.as_uuid());
    }
    f
}

/// The crate README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
