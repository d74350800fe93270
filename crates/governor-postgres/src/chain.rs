//! The audit chain. A batch's transaction only queues its audit records
//! (`audit_pending`), so writers on every instance commit without waiting
//! for each other; right after committing, the writer links whatever is
//! queued onto the one chain in a short transaction of its own, under an
//! advisory lock. Chaining takes turns across instances, but each turn
//! links every record queued by then, and no batch's commit waits on it.
//!
//! A record queued by a writer that died before chaining is linked by the
//! next chaining step of any instance, or when a store opens.

use governor_core::{AuditRecord, GENESIS_HASH, StoreError, chain_hash};
use uuid::Uuid;

use crate::codec::decode_json;
use crate::conn::Conn;
use crate::error::map;

/// Most records linked by one transaction.
const MAX_LINKED: i64 = 10_000;

/// Links every queued audit record onto the chain; how many it linked.
pub(crate) async fn link_pending(conn: &Conn, schema: &str) -> Result<usize, StoreError> {
    let mut linked = 0;
    loop {
        let c = conn.client();
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| map("audit", e))?;
        match link_some(conn, schema).await {
            Ok(n) => {
                c.batch_execute("COMMIT")
                    .await
                    .map_err(|e| map("audit", e))?;
                linked += n;
                if (n as i64) < MAX_LINKED {
                    return Ok(linked);
                }
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
    }
}

async fn link_some(conn: &Conn, schema: &str) -> Result<usize, StoreError> {
    const OP: &str = "audit";
    let c = conn.client();
    let lock = conn
        .statement(OP, "SELECT pg_advisory_xact_lock(hashtext($1))")
        .await?;
    c.execute(&lock, &[&format!("governor.audit.{schema}")])
        .await
        .map_err(|e| map(OP, e))?;
    let take = conn
        .statement(
            OP,
            "DELETE FROM audit_pending WHERE n IN \
             (SELECT n FROM audit_pending ORDER BY n LIMIT $1) \
             RETURNING n, execution_id, record",
        )
        .await?;
    let mut queued: Vec<(i64, Uuid, String)> = c
        .query(&take, &[&MAX_LINKED])
        .await
        .map_err(|e| map(OP, e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    if queued.is_empty() {
        return Ok(0);
    }
    queued.sort_by_key(|q| q.0);
    let head = conn
        .statement(OP, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .await?;
    let (mut seq, mut prev) = match c.query_opt(&head, &[]).await.map_err(|e| map(OP, e))? {
        Some(row) => (row.get::<_, i64>(0), row.get::<_, String>(1)),
        None => (0, GENESIS_HASH.to_owned()),
    };
    let mut seqs = Vec::with_capacity(queued.len());
    let mut hashes = Vec::with_capacity(queued.len());
    for (_, _, text) in &queued {
        let record: AuditRecord = decode_json(OP, "audit record", text)?;
        seq += 1;
        prev = chain_hash(&prev, seq as u64, &record);
        seqs.push(seq);
        hashes.push(prev.clone());
    }
    let ids: Vec<Uuid> = queued.iter().map(|q| q.1).collect();
    let texts: Vec<&str> = queued.iter().map(|q| q.2.as_str()).collect();
    let insert = conn
        .statement(
            OP,
            "INSERT INTO audit (seq, execution_id, record, hash) \
             SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[])",
        )
        .await?;
    c.execute(&insert, &[&seqs, &ids, &texts, &hashes])
        .await
        .map_err(|e| map(OP, e))?;
    Ok(queued.len())
}
