//! The outbox table: notifications written with the change that causes
//! them, claimed with leases by delivery workers.

use governor_core::{
    DeliveryState, Lease, Notification, NotificationQuery, StoreError, StoreErrorKind,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::codec::{blob, encode_json, from_nanos, to_nanos};
use crate::error::map;

/// A notification as its row stores it: the lease lives in its columns.
pub(crate) struct Encoded {
    id: Vec<u8>,
    execution_id: Vec<u8>,
    state: &'static str,
    due: i64,
    json: String,
}

/// Encodes `n` (without its lease) on the caller's thread.
pub(crate) fn encode(op: &'static str, n: &Notification) -> Result<Encoded, StoreError> {
    let stored = Notification {
        lease: None,
        ..n.clone()
    };
    Ok(Encoded {
        id: blob(n.id),
        execution_id: blob(n.execution_id.as_uuid()),
        state: n.state.as_str(),
        due: to_nanos(n.next_attempt_at),
        json: encode_json(op, &stored)?,
    })
}

/// Inserts `rows` (inside the write that carries them), up to 8 a
/// statement, as events are.
pub(crate) fn insert(conn: &Connection, rows: &[Encoded]) -> Result<(), StoreError> {
    for chunk in rows.chunks(8) {
        let values = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT OR FAIL INTO outbox (id, execution_id, state, due, notification) VALUES {values}"
        );
        let params: Vec<&dyn rusqlite::ToSql> = chunk
            .iter()
            .flat_map(|r| {
                [
                    &r.id as &dyn rusqlite::ToSql,
                    &r.execution_id,
                    &r.state,
                    &r.due,
                    &r.json,
                ]
            })
            .collect();
        conn.prepare_cached(&sql)
            .and_then(|mut s| s.execute(params.as_slice()))
            .map_err(|e| map("outbox", e))?;
    }
    Ok(())
}

/// The columns a read selects, for [`decode`].
pub(crate) const COLUMNS: &str = "notification, lease_owner, lease_until";

/// A row of [`COLUMNS`] as a notification.
pub(crate) fn decode(op: &'static str, row: &Row<'_>) -> Result<Notification, StoreError> {
    let text: String = row.get(0).map_err(|e| map(op, e))?;
    let mut n: Notification = serde_json::from_str(&text)
        .map_err(|e| StoreError::corrupt(op, format!("notification: {e}")))?;
    let owner: Option<String> = row.get(1).map_err(|e| map(op, e))?;
    let until: Option<i64> = row.get(2).map_err(|e| map(op, e))?;
    n.lease = owner.zip(until).map(|(owner, until)| Lease {
        owner,
        until: from_nanos(until),
    });
    Ok(n)
}

/// Leases up to `limit` due notifications to `owner` until `until`.
pub(crate) fn claim(
    conn: &Connection,
    owner: &str,
    now: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    const OP: &str = "claim_notifications";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(&format!(
            "UPDATE outbox SET lease_owner = ?1, lease_until = ?2 WHERE id IN (
                SELECT id FROM outbox WHERE state = 'pending' AND due <= ?3
                AND (lease_until IS NULL OR lease_until <= ?3) ORDER BY id LIMIT ?4)
             RETURNING {COLUMNS}"
        ))
        .map_err(|e| map(OP, e))?;
    let mut rows = stmt
        .query(params![owner, until, now, limit])
        .map_err(|e| map(OP, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
        out.push(decode(OP, row)?);
    }
    // RETURNING gives no order.
    out.sort_by_key(|n| n.id);
    Ok(out)
}

/// Stores `next` if `owner` holds its lease at `now`.
pub(crate) fn finish(
    conn: &Connection,
    next: &Encoded,
    owner: &str,
    now: i64,
) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "UPDATE outbox SET state = ?1, due = ?2, notification = ?3, lease_owner = NULL, lease_until = NULL
         WHERE id = ?4 AND lease_owner = ?5 AND lease_until > ?6",
    )
    .and_then(|mut s| s.execute(params![next.state, next.due, next.json, next.id, owner, now]))
    .map(|n| n > 0)
    .map_err(|e| map("finish_notification", e))
}

/// Makes dead notification `id` pending again, due at `now`.
pub(crate) fn retry(
    conn: &Connection,
    id: uuid::Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Notification>, StoreError> {
    const OP: &str = "retry_notification";
    let found = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE id = ?1 AND state = 'dead'"
        ))
        .and_then(|mut s| {
            s.query_row(params![blob(id)], |r| Ok(decode(OP, r)))
                .optional()
        })
        .map_err(|e| map(OP, e))?
        .transpose()?;
    let Some(dead) = found else {
        return Ok(None);
    };
    let next = dead.revived(now);
    let row = encode(OP, &next)?;
    let changed = conn
        .prepare_cached(
            "UPDATE outbox SET state = ?1, due = ?2, notification = ?3, lease_owner = NULL, lease_until = NULL
             WHERE id = ?4 AND state = 'dead'",
        )
        .and_then(|mut s| s.execute(params![row.state, row.due, row.json, row.id]))
        .map_err(|e| map(OP, e))?;
    if changed == 0 {
        return Err(StoreError::new(
            StoreErrorKind::Conflict,
            OP,
            format!("notification {id} changed while it was retried"),
        ));
    }
    Ok(Some(next))
}

/// The notifications `query` selects, oldest first.
pub(crate) fn list(
    conn: &Connection,
    query: &NotificationQuery,
) -> Result<Vec<Notification>, StoreError> {
    const OP: &str = "notifications";
    let limit = i64::try_from(query.effective_limit()).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR execution_id = ?1)
             AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4"
        ))
        .map_err(|e| map(OP, e))?;
    let mut rows = stmt
        .query(params![
            query.execution_id.map(|id| blob(id.as_uuid())),
            query.state.map(DeliveryState::as_str),
            query.after.map(blob),
            limit
        ])
        .map_err(|e| map(OP, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
        out.push(decode(OP, row)?);
    }
    Ok(out)
}
