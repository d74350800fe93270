//! A governor [`Store`] on MongoDB, the original's production backend.
//!
//! Several processes (applications, `governor serve` replicas, resume
//! workers) can share one database:
//!
//! - writes that arrive together in one process share one multi-document
//!   transaction (group commit), so an execution, its events, snapshot
//!   and audit record are stored together or not at all;
//! - work is claimed with leases taken by conditional updates, and every
//!   status change is conditional, so no execution completes twice;
//! - every store handle follows a change stream on the executions, so a
//!   decision made on one instance wakes the caller waiting on another.
//!
//! Transactions and change streams need a replica set: a single node
//! started with `--replSet` is enough. A standalone server is refused
//! when the store opens, with an error saying so.
//!
//! ```no_run
//! use governor_core::Governor;
//! use governor_mongodb::{MongoOptions, MongoStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MongoStore::connect_with(
//!     "mongodb://db.internal:27017/?replicaSet=rs0",
//!     MongoOptions::new().database("governor"),
//! )
//! .await?;
//! let governor = Governor::builder().store(store).build()?;
//! # let _ = governor;
//! # Ok(())
//! # }
//! ```

mod codec;
mod error;
mod outbox;
mod schema;
mod watch;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use governor_core::store::{
    AuditRows, EventQuery, ExecutionQuery, WATCH_CAPACITY, first_id_at, lease_until,
};
use governor_core::{
    AuditEntry, Change, Checkpoint, Creation, Event, Execution, ExecutionId, ExecutionStatus,
    Grant, Notification, NotificationQuery, Pause, Snapshot, Store, StoreError, Transition,
};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::codec::{
    Fields, decode_json, encode_json, event, execution, from_nanos, id_text, to_nanos,
};
use crate::error::{closed, map};
pub use crate::schema::SCHEMA_VERSION;
use crate::writer::Job;

/// Settings for [`MongoStore::connect_with`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct MongoOptions {
    database: Option<String>,
    migrate: bool,
}

impl MongoOptions {
    /// Defaults: the URL's database (or `governor` when it names none),
    /// indexes created on open.
    pub fn new() -> Self {
        Self {
            database: None,
            migrate: true,
        }
    }

    /// The database holding governor's collections: letters, digits, `_`
    /// and `-`, at most 63 characters.
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Whether opening creates missing indexes and records the schema
    /// version (default), or only checks that the database is current.
    pub fn migrate_on_open(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
}

/// The MongoDB store. Cheap to share behind an `Arc`.
pub struct MongoStore {
    writer: mpsc::UnboundedSender<Job>,
    db: Database,
    changes: broadcast::Sender<Change>,
    /// Keeps the change stream listener running while the store exists.
    _alive: Arc<()>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

/// Connects and picks the database (checked) the options or URL name.
async fn open(url: &str, database: Option<&str>) -> Result<(Client, Database), StoreError> {
    const OP: &str = "open";
    let options = ClientOptions::parse(url).await.map_err(|e| map(OP, e))?;
    let name = database
        .map(str::to_owned)
        .or_else(|| options.default_database.clone())
        .unwrap_or_else(|| "governor".into());
    schema::check_name(&name)?;
    let client = Client::with_options(options).map_err(|e| map(OP, e))?;
    let db = client.database(&name);
    schema::check_topology(&db).await?;
    Ok((client, db))
}

impl MongoStore {
    /// Connects with default options, creating indexes.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, MongoOptions::new()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(url: &str, options: MongoOptions) -> Result<Self, StoreError> {
        let (client, db) = open(url, options.database.as_deref()).await?;
        if options.migrate {
            schema::migrate(&db).await?;
        } else {
            schema::check_current(&db).await?;
        }
        let (changes, _) = broadcast::channel(WATCH_CAPACITY);
        let alive = Arc::new(());
        watch::spawn(
            db.collection("executions"),
            changes.clone(),
            Arc::downgrade(&alive),
        );
        let writer = writer::spawn(client, db.clone(), changes.clone());
        Ok(Self {
            writer,
            db,
            changes,
            _alive: alive,
        })
    }

    /// Creates the indexes and records the schema version in `database`
    /// without opening a store; returns how many versions it moved up.
    pub async fn migrate(url: &str, database: &str) -> Result<i64, StoreError> {
        let (_client, db) = open(url, Some(database)).await?;
        schema::migrate(&db).await
    }

    /// The database in use.
    pub fn database(&self) -> &str {
        self.db.name()
    }

    fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn write(&self, op: writer::Op, name: &'static str) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { op, reply })
            .map_err(|_| closed(name))?;
        rx.await.map_err(|_| closed(name))?
    }

    /// Documents of `collection` matching `filter`, in `sort` order.
    async fn find(
        &self,
        op: &'static str,
        collection: &str,
        filter: Document,
        sort: Document,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        self.collection(collection)
            .find(filter)
            .sort(sort)
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| map(op, e))?
            .try_collect()
            .await
            .map_err(|e| map(op, e))
    }

    /// The actions of executions `ids` (events do not repeat theirs).
    async fn actions_of(
        &self,
        op: &'static str,
        ids: impl Iterator<Item = ExecutionId>,
    ) -> Result<std::collections::HashMap<ExecutionId, Arc<str>>, StoreError> {
        let ids: std::collections::BTreeSet<ExecutionId> = ids.collect();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let texts: Vec<String> = ids.iter().map(|id| id_text(id.as_uuid())).collect();
        let docs = self
            .find(
                op,
                "executions",
                doc! { "_id": { "$in": texts } },
                doc! { "_id": 1 },
                ids.len(),
            )
            .await?;
        docs.iter()
            .map(|d| {
                let f = Fields::new(op, d);
                Ok((
                    ExecutionId::from_uuid(f.uuid("_id")?),
                    Arc::from(f.text("action")?),
                ))
            })
            .collect()
    }

    /// Leases up to `limit` executions matching `free` for `owner`. The
    /// candidates are read first; the update re-checks `free` on each
    /// document atomically, so of two claimers racing for one execution
    /// only one gets it, and a token marks which ones this call won.
    async fn claim_where(
        &self,
        op: &'static str,
        free: Document,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Execution>, StoreError> {
        let limit = limit.min(10_000);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let executions = self.collection("executions");
        let candidates: Vec<Document> = executions
            .find(free.clone())
            .projection(doc! { "_id": 1 })
            .sort(doc! { "_id": 1 })
            .limit(limit as i64)
            .await
            .map_err(|e| map(op, e))?
            .try_collect()
            .await
            .map_err(|e| map(op, e))?;
        let ids: Vec<Bson> = candidates
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let token = Uuid::now_v7().simple().to_string();
        let until = to_nanos(lease_until(Utc::now(), lease));
        let mut filter = free;
        filter.insert("_id", doc! { "$in": &ids });
        executions
            .update_many(
                filter,
                doc! { "$set": { "lease_owner": owner, "lease_until": until, "claim": &token } },
            )
            .await
            .map_err(|e| map(op, e))?;
        let won = self
            .find(
                op,
                "executions",
                doc! { "_id": { "$in": ids }, "claim": token },
                doc! { "_id": 1 },
                limit,
            )
            .await?;
        won.iter().map(|d| execution(op, d)).collect()
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
        let set = match lease {
            Some(l) => doc! { "lease_until": to_nanos(lease_until(now, l)) },
            None => doc! { "lease_owner": Bson::Null, "lease_until": Bson::Null },
        };
        let key = id_text(id.as_uuid());
        let executions = self.collection("executions");
        let updated = executions
            .update_one(
                doc! { "_id": &key, "lease_owner": owner, "lease_until": { "$gt": to_nanos(now) } },
                doc! { "$set": set },
            )
            .await
            .map_err(|e| map(op, e))?;
        if updated.matched_count == 1 {
            return Ok(());
        }
        let exists = executions
            .find_one(doc! { "_id": &key })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(|e| map(op, e))?;
        Err(match exists {
            None => StoreError::not_found(op, format!("execution {id} does not exist")),
            Some(_) => StoreError::conflict(op, format!("lease on {id} is not held by `{owner}`")),
        })
    }
}

/// Narrows a claim's filter to `actions`, if given.
fn only(free: &mut Document, actions: Option<&[&str]>) {
    if let Some(a) = actions {
        free.insert("action", doc! { "$in": a });
    }
}

/// The filter for [`ExecutionQuery`].
fn execution_filter(query: &ExecutionQuery) -> Document {
    let mut f = Document::new();
    if !query.statuses.is_empty() {
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        f.insert("status", doc! { "$in": statuses });
    }
    if let Some(a) = &query.action {
        f.insert("action", a.as_str());
    }
    if let Some(p) = &query.principal {
        f.insert("principal_id", p.as_str());
    }
    // Ids are time-ordered, so a time range is also an id range the
    // primary key can seek; `created_at` keeps the bound exact.
    let mut ids = Document::new();
    let mut created = Document::new();
    if let Some(t) = query.since {
        ids.insert("$gte", id_text(first_id_at(t, -1_000)));
        created.insert("$gte", to_nanos(t));
    }
    if let Some(t) = query.until {
        ids.insert("$lt", id_text(first_id_at(t, 1_000)));
        created.insert("$lt", to_nanos(t));
    }
    if let Some(b) = query.before {
        // Both bounds are `$lt` on text that sorts like the ids: keep the
        // tighter one.
        let before = id_text(b.as_uuid());
        let tighter = match ids.get_str("$lt") {
            Ok(until) if until < before.as_str() => until.to_owned(),
            _ => before,
        };
        ids.insert("$lt", tighter);
    }
    if !ids.is_empty() {
        f.insert("_id", ids);
    }
    if !created.is_empty() {
        f.insert("created_at", created);
    }
    f
}

#[async_trait]
impl Store for MongoStore {
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
        self.collection("executions")
            .find_one(doc! { "_id": id_text(id.as_uuid()) })
            .await
            .map_err(|e| map(OP, e))?
            .map(|d| execution(OP, &d))
            .transpose()
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, StoreError> {
        const OP: &str = "executions";
        let docs = self
            .find(
                OP,
                "executions",
                execution_filter(query),
                doc! { "_id": -1 },
                query.effective_limit(),
            )
            .await?;
        docs.iter().map(|d| execution(OP, d)).collect()
    }

    async fn count_executions(&self, query: &ExecutionQuery) -> Result<u64, StoreError> {
        const OP: &str = "count_executions";
        self.collection("executions")
            .count_documents(execution_filter(query))
            .await
            .map_err(|e| map(OP, e))
    }

    async fn snapshots(&self, id: ExecutionId) -> Result<Vec<Snapshot>, StoreError> {
        const OP: &str = "snapshots";
        let docs = self
            .find(
                OP,
                "snapshots",
                doc! { "execution_id": id_text(id.as_uuid()) },
                doc! { "captured_at": 1 },
                usize::MAX,
            )
            .await?;
        let mut out = docs
            .iter()
            .map(|d| {
                let f = Fields::new(OP, d);
                Ok(Snapshot {
                    execution_id: id,
                    checkpoint: f
                        .text("checkpoint")?
                        .parse::<Checkpoint>()
                        .map_err(|e| StoreError::corrupt(OP, e))?,
                    captured_at: from_nanos(f.int("captured_at")?),
                    state: f.json("state")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|s| (s.captured_at, s.checkpoint == Checkpoint::PostExecution));
        Ok(out)
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        const OP: &str = "events";
        let mut f = Document::new();
        if let Some(id) = query.execution_id {
            f.insert("execution_id", id_text(id.as_uuid()));
        }
        if !query.kinds.is_empty() {
            let kinds: Vec<&str> = query.kinds.iter().map(|k| k.as_str()).collect();
            f.insert("kind", doc! { "$in": kinds });
        }
        if let Some(after) = query.after {
            f.insert("_id", doc! { "$gt": id_text(after) });
        }
        let docs = self
            .find(OP, "events", f, doc! { "_id": 1 }, query.effective_limit())
            .await?;
        let records = docs
            .iter()
            .map(|d| event(OP, d))
            .collect::<Result<Vec<_>, _>>()?;
        let actions = self
            .actions_of(OP, records.iter().map(|(id, _)| *id))
            .await?;
        records
            .into_iter()
            .map(|(id, record)| match actions.get(&id) {
                Some(action) => Ok(record.into_event(id, Arc::clone(action))),
                None => Err(StoreError::corrupt(
                    OP,
                    format!("event {} of missing execution {id}", record.id),
                )),
            })
            .collect()
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        const OP: &str = "audit_entries";
        // The entry at `after` is read too: its hash is the next one's
        // `prev_hash`, which is not stored twice.
        let limit = limit.min(100_000);
        let from = i64::try_from(after).unwrap_or(i64::MAX);
        let docs = self
            .find(
                OP,
                "audit",
                doc! { "_id": { "$gte": from } },
                doc! { "_id": 1 },
                limit + 1,
            )
            .await?;
        let mut entries = AuditRows::new(after, limit);
        for d in &docs {
            let f = Fields::new(OP, d);
            let seq = u64::try_from(f.int("_id")?).unwrap_or(0);
            entries.push(seq, || f.text("record"), f.text("hash")?.to_owned())?;
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
        let mut free = doc! {
            "status": status.as_str(),
            "$or": [ { "lease_until": Bson::Null }, { "lease_until": { "$lte": to_nanos(Utc::now()) } } ],
        };
        only(&mut free, actions);
        self.claim_where("claim", free, owner, lease, limit).await
    }

    async fn claim_abandoned(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        actions: Option<&[&str]>,
    ) -> Result<Vec<Execution>, StoreError> {
        // Abandoned work had a lease that lapsed (`$lte` skips nulls).
        let mut free = doc! {
            "status": ExecutionStatus::Running.as_str(),
            "lease_until": { "$lte": to_nanos(Utc::now()) },
        };
        only(&mut free, actions);
        self.claim_where("claim_abandoned", free, owner, lease, limit)
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
        self.collection("grants")
            .insert_one(doc! {
                "_id": id_text(grant.id),
                "action": &grant.action,
                "principal_id": &grant.principal,
                "grant": encode_json(OP, grant)?,
                "until": to_nanos(grant.until),
            })
            .await
            .map(drop)
            .map_err(|e| map(OP, e))
    }

    async fn grants(
        &self,
        action: &str,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        const OP: &str = "grants";
        let docs = self
            .find(
                OP,
                "grants",
                doc! { "action": action, "principal_id": principal, "until": { "$gt": to_nanos(now) } },
                doc! { "_id": 1 },
                usize::MAX,
            )
            .await?;
        docs.iter()
            .map(|d| decode_json(OP, "grant", Fields::new(OP, d).text("grant")?))
            .collect()
    }

    async fn valid_grants(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Grant>, StoreError> {
        const OP: &str = "valid_grants";
        let docs = self
            .find(
                OP,
                "grants",
                doc! { "until": { "$gt": to_nanos(now) } },
                doc! { "_id": 1 },
                limit,
            )
            .await?;
        docs.iter()
            .map(|d| decode_json(OP, "grant", Fields::new(OP, d).text("grant")?))
            .collect()
    }

    async fn remove_grant(&self, id: uuid::Uuid) -> Result<Option<Grant>, StoreError> {
        const OP: &str = "remove_grant";
        let removed = self
            .collection("grants")
            .find_one_and_delete(doc! { "_id": id_text(id) })
            .await
            .map_err(|e| map(OP, e))?;
        removed
            .map(|d| decode_json(OP, "grant", Fields::new(OP, &d).text("grant")?))
            .transpose()
    }

    async fn put_pause(&self, pause: &Pause) -> Result<(), StoreError> {
        const OP: &str = "put_pause";
        self.collection("pauses")
            .replace_one(
                doc! { "_id": pause.key() },
                doc! { "_id": pause.key(), "pause": encode_json(OP, pause)? },
            )
            .upsert(true)
            .await
            .map(drop)
            .map_err(|e| map(OP, e))
    }

    async fn remove_pause(&self, key: &str) -> Result<bool, StoreError> {
        let deleted = self
            .collection("pauses")
            .delete_one(doc! { "_id": key })
            .await
            .map_err(|e| map("remove_pause", e))?;
        Ok(deleted.deleted_count > 0)
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        const OP: &str = "pauses";
        let docs = self
            .find(OP, "pauses", Document::new(), doc! { "_id": 1 }, usize::MAX)
            .await?;
        docs.iter()
            .map(|d| decode_json(OP, "pause", Fields::new(OP, d).text("pause")?))
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

/// The crate README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
