//! The outbox table: notifications written with the change that causes
//! them (by the writer, in the batch's transaction), claimed with leases
//! by delivery workers on any instance.

use std::time::Duration;

use chrono::{DateTime, Utc};
use governor_core::store::lease_until;
use governor_core::{
    DeliveryState, Lease, Notification, NotificationQuery, StoreError, StoreErrorKind,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{encode_json, from_nanos, get, to_nanos};

/// A notification as its row stores it: the lease lives in its columns.
pub(crate) struct Encoded {
    pub(crate) id: Uuid,
    pub(crate) execution_id: Uuid,
    pub(crate) state: &'static str,
    pub(crate) due: i64,
    pub(crate) json: String,
}

/// Encodes `n` (without its lease).
pub(crate) fn encode(op: &'static str, n: &Notification) -> Result<Encoded, StoreError> {
    let stored = Notification {
        lease: None,
        ..n.clone()
    };
    Ok(Encoded {
        id: n.id,
        execution_id: n.execution_id.as_uuid(),
        state: n.state.as_str(),
        due: to_nanos(n.next_attempt_at),
        json: encode_json(op, &stored)?,
    })
}

/// Inserts a batch's notifications (the writer sends it in the batch's
/// transaction).
pub(crate) const INSERT: &str = "INSERT INTO outbox (id, execution_id, state, due, notification) \
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[])";

const COLUMNS: &str = "notification, lease_owner, lease_until";

fn decode(op: &'static str, row: &Row) -> Result<Notification, StoreError> {
    let text: &str = get(op, row, 0)?;
    let mut n: Notification = serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(op, format!("notification: {e}")))?;
    let owner: Option<String> = get(op, row, 1)?;
    let until: Option<i64> = get(op, row, 2)?;
    n.lease = owner.zip(until).map(|(owner, until)| Lease {
        owner,
        until: from_nanos(until),
    });
    Ok(n)
}

impl PostgresStore {
    pub(crate) async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        const OP: &str = "claim_notifications";
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE id IN (\
               SELECT id FROM outbox WHERE state = 'pending' AND due <= $3 \
               AND (lease_until IS NULL OR lease_until <= $3) \
               ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
        );
        let rows = self
            .query(
                OP,
                &sql,
                &[
                    &owner,
                    &to_nanos(lease_until(now, lease)),
                    &to_nanos(now),
                    &(limit.min(10_000) as i64),
                ],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| decode(OP, r))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|n| n.id);
        Ok(out)
    }

    pub(crate) async fn finish_outbox(
        &self,
        next: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "finish_notification";
        let row = encode(OP, next)?;
        let rows = self
            .query(
                OP,
                "UPDATE outbox SET state = $1, due = $2, notification = $3, lease_owner = NULL, \
                 lease_until = NULL WHERE id = $4 AND lease_owner = $5 AND lease_until > $6 RETURNING id",
                &[&row.state, &row.due, &row.json, &row.id, &owner, &to_nanos(now)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub(crate) async fn list_outbox(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        const OP: &str = "notifications";
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE ($1::uuid IS NULL OR execution_id = $1) \
             AND ($2::text IS NULL OR state = $2) AND ($3::uuid IS NULL OR id > $3) \
             ORDER BY id LIMIT $4"
        );
        let rows = self
            .query(
                OP,
                &sql,
                &[
                    &query.execution_id.map(|id| id.as_uuid()),
                    &query.state.map(DeliveryState::as_str),
                    &query.after,
                    &(query.effective_limit() as i64),
                ],
            )
            .await?;
        rows.iter().map(|r| decode(OP, r)).collect()
    }

    pub(crate) async fn retry_outbox(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        const OP: &str = "retry_notification";
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1 AND state = 'dead'");
        let rows = self.query(OP, &sql, &[&id]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let next = decode(OP, row)?.revived(now);
        let row = encode(OP, &next)?;
        let changed = self
            .query(
                OP,
                "UPDATE outbox SET state = $1, due = $2, notification = $3, lease_owner = NULL, \
                 lease_until = NULL WHERE id = $4 AND state = 'dead' RETURNING id",
                &[&row.state, &row.due, &row.json, &row.id],
            )
            .await?;
        if changed.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                OP,
                format!("notification {id} changed while it was retried"),
            ));
        }
        Ok(Some(next))
    }
}
