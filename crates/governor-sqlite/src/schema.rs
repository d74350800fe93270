//! Schema and migrations, tracked with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::error::map;
use governor_core::StoreError;

/// Every index costs a B-tree write per row on the hot path, so only the
/// lookups the API needs are indexed, ids are 16-byte blobs, and nothing
/// another row holds is repeated (an event's action comes from its
/// execution, an audit entry's previous hash from the entry before). The
/// lookups the API needs are indexed: by status, action and principal
/// (with the id for ordering), events by execution. Time ranges use the
/// time-ordered ids.
///
/// Each entry moves the schema one version up. Never edit a shipped entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE executions (
    id           BLOB PRIMARY KEY,
    action       TEXT NOT NULL,
    status       TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    tenant       TEXT,
    principal    TEXT NOT NULL,
    inputs       TEXT NOT NULL,
    output       TEXT,
    failure      TEXT,
    approval     TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    version      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX executions_status ON executions (status, id);
CREATE INDEX executions_action ON executions (action, id);
CREATE INDEX executions_principal ON executions (principal_id, id);

CREATE TABLE snapshots (
    execution_id BLOB NOT NULL,
    captured_at  INTEGER NOT NULL,
    checkpoint   TEXT NOT NULL,
    state        TEXT NOT NULL,
    PRIMARY KEY (execution_id, captured_at, checkpoint)
) WITHOUT ROWID;

CREATE TABLE events (
    id           BLOB PRIMARY KEY,
    execution_id BLOB NOT NULL,
    kind         TEXT NOT NULL,
    time         INTEGER NOT NULL,
    data         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_execution ON events (execution_id, id);

CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY,
    execution_id BLOB NOT NULL,
    record       TEXT NOT NULL,
    hash         TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE grants (
    id           BLOB PRIMARY KEY,
    action       TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    grant_json   TEXT NOT NULL,
    until        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX grants_lookup ON grants (action, principal_id, until);
"#,
    r#"
CREATE TABLE pauses (
    scope        TEXT PRIMARY KEY,
    pause_json   TEXT NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE outbox (
    id           BLOB PRIMARY KEY,
    execution_id BLOB NOT NULL,
    state        TEXT NOT NULL,
    due          INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    notification TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX outbox_due ON outbox (state, due);
CREATE INDEX outbox_execution ON outbox (execution_id, id);
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`]. Refuses a database
/// written by a newer build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| map("migrate", e))?;
    if current > SCHEMA_VERSION {
        return Err(governor_core::StoreError::new(
            governor_core::StoreErrorKind::Invalid,
            "migrate",
            format!(
                "database schema version {current} is newer than this build's {SCHEMA_VERSION}"
            ),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(|e| map("migrate", e))?;
        tx.execute_batch(sql).map_err(|e| map("migrate", e))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(|e| map("migrate", e))?;
        tx.commit().map_err(|e| map("migrate", e))?;
    }
    Ok(())
}
