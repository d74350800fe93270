//! Collections, indexes and the schema version (the `meta` collection's
//! `schema` document).

use governor_core::{StoreError, StoreErrorKind};
use mongodb::bson::{Document, doc};
use mongodb::{Database, IndexModel};

use crate::error::{DUPLICATE_KEY, code, map};

/// A collection, an index name and its keys (ascending).
type Index = (&'static str, &'static str, &'static [(&'static str, i32)]);

/// Every index costs a write per document on the hot path, so only the
/// lookups the API offers are indexed: executions by status, action and
/// principal (with the id, which is time-ordered, for paging, time ranges
/// and claims), events and snapshots by execution, grants by action and
/// principal. Primary keys are `_id`: the execution, event and grant ids,
/// the audit sequence number, the pause scope.
const INDEXES: &[Index] = &[
    ("executions", "status_id", &[("status", 1), ("_id", 1)]),
    ("executions", "action_id", &[("action", 1), ("_id", 1)]),
    (
        "executions",
        "principal_id",
        &[("principal_id", 1), ("_id", 1)],
    ),
    ("events", "execution_id", &[("execution_id", 1), ("_id", 1)]),
    (
        "snapshots",
        "execution_id",
        &[("execution_id", 1), ("captured_at", 1)],
    ),
    (
        "grants",
        "lookup",
        &[("action", 1), ("principal_id", 1), ("until", 1)],
    ),
    // Also makes the collection exist before a transaction inserts into it.
    ("outbox", "due", &[("state", 1), ("due", 1)]),
    ("outbox", "execution_id", &[("execution_id", 1), ("_id", 1)]),
];

/// The schema version this build writes. Raise it when a change needs
/// more than new indexes (which opening creates anyway).
pub const SCHEMA_VERSION: i64 = 1;

/// Checks that `name` is a database name MongoDB accepts and that is safe
/// to print: letters, digits, `_` and `-`, at most 63 bytes.
pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            "open",
            format!("database name `{name}` must be 1 to 63 characters of A-Z, a-z, 0-9, _ and -"),
        ))
    }
}

/// Fails unless the server can run transactions and change streams: a
/// replica set member (a single-node replica set is enough) or a mongos.
pub(crate) async fn check_topology(db: &Database) -> Result<(), StoreError> {
    const OP: &str = "open";
    let hello = db
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(|e| map(OP, e))?;
    let replica_set = hello.get_str("setName").is_ok();
    let router = hello.get_str("msg") == Ok("isdbgrid");
    if replica_set || router {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            OP,
            "the MongoDB server is standalone; governor needs a replica set (a single node \
             started with --replSet is enough) for transactions and change streams",
        ))
    }
}

/// Creates the indexes and records [`SCHEMA_VERSION`]; refuses a database
/// written by a newer build. Safe to run from several instances at once:
/// creating an existing index is a no-op.
pub(crate) async fn migrate(db: &Database) -> Result<i64, StoreError> {
    const OP: &str = "migrate";
    let current = version(db).await?;
    refuse_newer(current)?;
    for (collection, name, keys) in INDEXES {
        let mut spec = Document::new();
        for (field, order) in *keys {
            spec.insert(*field, *order);
        }
        let model = IndexModel::builder()
            .keys(spec)
            .options(
                mongodb::options::IndexOptions::builder()
                    .name(name.to_string())
                    .build(),
            )
            .build();
        db.collection::<Document>(collection)
            .create_index(model)
            .await
            .map_err(|e| map(OP, e))?;
    }
    // The audit chain's head exists before any writer appends, so
    // appenders only ever update it (and conflicting updates are retried).
    upsert(
        db,
        "audit_head",
        doc! { "$setOnInsert": { "seq": 0_i64, "hash": governor_core::GENESIS_HASH } },
    )
    .await?;
    upsert(db, "schema", doc! { "$max": { "version": SCHEMA_VERSION } }).await?;
    Ok(SCHEMA_VERSION - current)
}

/// Applies `update` to the `meta` document `id`, creating it if needed.
async fn upsert(db: &Database, id: &str, update: Document) -> Result<(), StoreError> {
    let result = db
        .collection::<Document>("meta")
        .update_one(doc! { "_id": id }, update)
        .upsert(true)
        .await;
    match result {
        Ok(_) => Ok(()),
        // Two instances upserting at once: one inserted, the other's
        // insert lost to it; the document exists either way.
        Err(e) if code(&e) == Some(DUPLICATE_KEY) => Ok(()),
        Err(e) => Err(map("migrate", e)),
    }
}

/// Fails unless the database is at [`SCHEMA_VERSION`] (for stores opened
/// without migrating).
pub(crate) async fn check_current(db: &Database) -> Result<(), StoreError> {
    let current = version(db).await?;
    refuse_newer(current)?;
    if current == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            "open",
            format!(
                "database is at version {current}, this build needs {SCHEMA_VERSION}: run `governor migrate`"
            ),
        ))
    }
}

async fn version(db: &Database) -> Result<i64, StoreError> {
    let found = db
        .collection::<Document>("meta")
        .find_one(doc! { "_id": "schema" })
        .await
        .map_err(|e| map("open", e))?;
    Ok(found
        .and_then(|d| {
            d.get("version")
                .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)))
        })
        .unwrap_or(0))
}

fn refuse_newer(current: i64) -> Result<(), StoreError> {
    if current > SCHEMA_VERSION {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            "open",
            format!("database is at version {current}, newer than this build's {SCHEMA_VERSION}"),
        ))
    } else {
        Ok(())
    }
}
