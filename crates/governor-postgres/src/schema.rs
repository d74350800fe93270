//! Schema and migrations, tracked in the `schema_version` table of the
//! store's own PostgreSQL schema.

use governor_core::{StoreError, StoreErrorKind};
use tokio_postgres::Client;

use crate::error::map;

/// Every index costs a B-tree write per row on the hot path, so only the
/// lookups the API offers are indexed: executions by status, action and
/// principal (with the id, which is time-ordered, for paging and time
/// ranges), events by execution, grants by action and principal. Ids are
/// `uuid`, times are nanoseconds since the epoch in `bigint` (exact, and
/// the same values the other stores keep), JSON is kept as the text it
/// was written as (the audit chain hashes it).
///
/// Each entry moves the schema one version up. Never edit a shipped entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE executions (
    id           uuid PRIMARY KEY,
    action       text NOT NULL,
    status       text NOT NULL,
    principal_id text NOT NULL,
    tenant       text,
    principal    text NOT NULL,
    inputs       text NOT NULL,
    output       text,
    failure      text,
    approval     text,
    lease_owner  text,
    lease_until  bigint,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL,
    finished_at  bigint,
    version      bigint NOT NULL DEFAULT 0
);
CREATE INDEX executions_status ON executions (status, id);
CREATE INDEX executions_action ON executions (action, id);
CREATE INDEX executions_principal ON executions (principal_id, id);

CREATE TABLE snapshots (
    execution_id uuid NOT NULL,
    captured_at  bigint NOT NULL,
    checkpoint   text NOT NULL,
    state        text NOT NULL,
    PRIMARY KEY (execution_id, captured_at, checkpoint)
);

CREATE TABLE events (
    id           uuid PRIMARY KEY,
    execution_id uuid NOT NULL,
    kind         text NOT NULL,
    time         bigint NOT NULL,
    data         text NOT NULL
);
CREATE INDEX events_execution ON events (execution_id, id);

CREATE TABLE audit (
    seq          bigint PRIMARY KEY,
    execution_id uuid NOT NULL,
    record       text NOT NULL,
    hash         text NOT NULL
);

CREATE TABLE grants (
    id           uuid PRIMARY KEY,
    action       text NOT NULL,
    principal_id text NOT NULL,
    grant_json   text NOT NULL,
    until        bigint NOT NULL
);
CREATE INDEX grants_lookup ON grants (action, principal_id, until);

CREATE TABLE pauses (
    scope        text PRIMARY KEY,
    pause_json   text NOT NULL
);

CREATE TABLE rate_limits (
    key          text PRIMARY KEY,
    tat_micros   bigint NOT NULL
);

CREATE TABLE rate_limit_calls (
    key          text NOT NULL,
    until_micros bigint NOT NULL
);
CREATE INDEX rate_limit_calls_key ON rate_limit_calls (key, until_micros);

-- A sliding window: at most `max_calls` calls whose window has not ended.
-- One key's calls take turns on an advisory lock, so the count and the
-- insert are one step. Returns -1 when admitted (or given back), otherwise
-- the microseconds until the oldest call leaves the window.
CREATE FUNCTION rate_limit_window(k text, max_calls int, window_us bigint, give_back boolean)
RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    n int;
    oldest bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('governor.rate.' || k));
    IF give_back THEN
        DELETE FROM rate_limit_calls WHERE ctid = (
            SELECT ctid FROM rate_limit_calls WHERE key = k ORDER BY until_micros DESC LIMIT 1);
        RETURN -1;
    END IF;
    DELETE FROM rate_limit_calls WHERE key = k AND until_micros <= now_us;
    SELECT count(*), min(until_micros) INTO n, oldest FROM rate_limit_calls WHERE key = k;
    IF n >= max_calls THEN
        RETURN GREATEST(1, oldest - now_us);
    END IF;
    INSERT INTO rate_limit_calls (key, until_micros) VALUES (k, now_us + window_us);
    RETURN -1;
END $$;
"#,
    r#"
-- Window limits above Limit::EXACT_WINDOW_CALLS count calls per slot of
-- window / slots: at most slots + 1 rows per key, however high the limit.
-- A slot counts until `until_micros`, one window and one slot after it
-- began, so no window ever holds more than `max_calls` calls.
CREATE TABLE rate_limit_slots (
    key          text NOT NULL,
    slot         bigint NOT NULL,
    calls        int NOT NULL,
    until_micros bigint NOT NULL,
    PRIMARY KEY (key, slot)
);
CREATE INDEX rate_limit_slots_until ON rate_limit_slots (until_micros);

CREATE FUNCTION rate_limit_slotted(k text, max_calls int, window_us bigint, slots int, give_back boolean)
RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    width bigint := GREATEST(1, (window_us + slots - 1) / slots);
    head bigint := now_us / width;
    n bigint;
    oldest bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('governor.rate.' || k));
    DELETE FROM rate_limit_slots WHERE key = k AND (slot < head - slots OR calls <= 0);
    IF give_back THEN
        UPDATE rate_limit_slots SET calls = calls - 1 WHERE key = k AND slot = (
            SELECT max(slot) FROM rate_limit_slots WHERE key = k);
        RETURN -1;
    END IF;
    SELECT COALESCE(sum(calls), 0), min(slot) INTO n, oldest FROM rate_limit_slots WHERE key = k;
    IF n >= max_calls THEN
        RETURN GREATEST(1, (oldest + slots + 1) * width - now_us);
    END IF;
    INSERT INTO rate_limit_slots AS s (key, slot, calls, until_micros)
        VALUES (k, head, 1, (head + slots + 1) * width)
        ON CONFLICT (key, slot) DO UPDATE SET calls = s.calls + 1;
    RETURN -1;
END $$;
"#,
    r#"
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    execution_id uuid NOT NULL,
    state        text NOT NULL,
    due          bigint NOT NULL,
    lease_owner  text,
    lease_until  bigint,
    notification text NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, due);
CREATE INDEX outbox_execution ON outbox (execution_id, id);
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Checks that `schema` is a plain lower-case identifier, so it can be
/// written into SQL (as the search path and the notification channel).
pub(crate) fn check_name(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= 48 {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            "open",
            format!(
                "schema name `{schema}` must be 1 to 48 characters of a-z, 0-9 and _, not starting with a digit"
            ),
        ))
    }
}

/// Brings `schema` up to [`SCHEMA_VERSION`], creating it if needed.
/// Instances starting together take turns (an advisory lock), and a
/// database written by a newer build is refused.
pub(crate) async fn migrate(client: &Client, schema: &str) -> Result<i64, StoreError> {
    const OP: &str = "migrate";
    let m = |e| map(OP, e);
    client.batch_execute("BEGIN").await.map_err(m)?;
    let result = migrate_locked(client, schema).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(m)?;
    result
}

async fn migrate_locked(client: &Client, schema: &str) -> Result<i64, StoreError> {
    const OP: &str = "migrate";
    let m = |e| map(OP, e);
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('governor.migrate.' || $1::text))",
            &[&schema],
        )
        .await
        .map_err(m)?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}; \
             CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL)"
        ))
        .await
        .map_err(m)?;
    let current: i64 = client
        .query_opt("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(m)?
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::new(
            StoreErrorKind::Invalid,
            OP,
            format!(
                "schema `{schema}` is at version {current}, newer than this build's {SCHEMA_VERSION}"
            ),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        client.batch_execute(sql).await.map_err(m)?;
        client
            .execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )
            .await
            .map_err(m)?;
    }
    Ok(SCHEMA_VERSION - current)
}

/// Fails unless the schema is at [`SCHEMA_VERSION`] (for stores opened
/// without migrating).
pub(crate) async fn check_current(client: &Client) -> Result<(), StoreError> {
    const OP: &str = "open";
    let m = |e| map(OP, e);
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(m)?
        .get(0);
    let current: i64 = if exists {
        client
            .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
            .await
            .map_err(m)?
            .get(0)
    } else {
        0
    };
    if current == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            OP,
            format!(
                "schema is at version {current}, this build needs {SCHEMA_VERSION}: run `governor migrate`"
            ),
        ))
    }
}
