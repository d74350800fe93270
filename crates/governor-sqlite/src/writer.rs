//! The single writer thread: every write goes through it, and writes that
//! arrive together share one transaction and one fsync (group commit).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use governor_core::store::lease_until;
use governor_core::{
    AuditEntry, Change, Event, Execution, ExecutionId, ExecutionStatus, GENESIS_HASH, Lease,
    StoreError, StoreErrorKind, Transition,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::codec::{EXECUTION_COLUMNS, execution, from_nanos, json_text, to_nanos};
use crate::error::map;

/// Most writes committed together.
const MAX_BATCH: usize = 512;

pub(crate) enum Op {
    Create(Box<Execution>, Vec<Arc<Event>>),
    Transition(Box<Transition>),
    Claim {
        status: ExecutionStatus,
        owner: String,
        lease: Duration,
        limit: usize,
    },
    Renew {
        id: ExecutionId,
        owner: String,
        lease: Duration,
    },
    Release {
        id: ExecutionId,
        owner: String,
    },
}

pub(crate) enum Done {
    Unit,
    Claimed(Vec<Execution>),
}

pub(crate) struct Job {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Done, StoreError>>,
}

pub(crate) fn spawn(
    mut conn: Connection,
    changes: broadcast::Sender<Change>,
) -> std::io::Result<mpsc::UnboundedSender<Job>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    std::thread::Builder::new()
        .name("governor-sqlite-writer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                commit_batch(&mut conn, batch, &changes);
            }
        })?;
    Ok(tx)
}

fn commit_batch(conn: &mut Connection, batch: Vec<Job>, changes: &broadcast::Sender<Change>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = map("begin", e);
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(StoreError::new(err.kind(), err.op(), err.to_string())));
            }
            return;
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    let mut announced = Vec::new();
    for job in &batch {
        let result = match tx.savepoint() {
            Ok(sp) => match apply(&sp, &job.op) {
                Ok(done) => sp.commit().map(|_| done).map_err(|e| map("commit", e)),
                Err(e) => Err(e),
            },
            Err(e) => Err(map("savepoint", e)),
        };
        if result.is_ok() {
            match &job.op {
                Op::Create(e, _) => announced.push(Change {
                    id: e.id,
                    status: e.status,
                }),
                Op::Transition(t) => announced.push(Change {
                    id: t.id,
                    status: t.to,
                }),
                _ => {}
            }
        }
        results.push(result);
    }
    if let Err(e) = tx.commit() {
        let err = map("commit", e);
        for job in batch {
            let _ = job
                .reply
                .send(Err(StoreError::new(err.kind(), err.op(), err.to_string())));
        }
        return;
    }
    for (job, result) in batch.into_iter().zip(results) {
        let _ = job.reply.send(result);
    }
    if changes.receiver_count() > 0 {
        for c in announced {
            let _ = changes.send(c);
        }
    }
}

fn apply(tx: &Connection, op: &Op) -> Result<Done, StoreError> {
    match op {
        Op::Create(e, events) => create(tx, e, events).map(|()| Done::Unit),
        Op::Transition(t) => transition(tx, t).map(|()| Done::Unit),
        Op::Claim {
            status,
            owner,
            lease,
            limit,
        } => claim(tx, *status, owner, *lease, *limit).map(Done::Claimed),
        Op::Renew { id, owner, lease } => renew(tx, *id, owner, Some(*lease)).map(|()| Done::Unit),
        Op::Release { id, owner } => renew(tx, *id, owner, None).map(|()| Done::Unit),
    }
}

fn create(tx: &Connection, e: &Execution, events: &[Arc<Event>]) -> Result<(), StoreError> {
    const OP: &str = "create";
    let principal = json_text(OP, &*e.principal)?;
    let failure = e.failure.as_ref().map(|f| json_text(OP, f)).transpose()?;
    let approval = e.approval.as_ref().map(|a| json_text(OP, a)).transpose()?;
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO executions (id, action, status, principal_id, tenant, principal, inputs, output, \
             failure, approval, lease_owner, lease_until, created_at, updated_at, finished_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )
        .map_err(|err| map(OP, err))?;
    let inserted = stmt.execute(params![
        e.id.to_string(),
        &*e.action,
        e.status.as_str(),
        e.principal.id,
        e.principal.tenant,
        principal,
        e.inputs.as_str(),
        e.output.as_ref().map(|o| o.as_str()),
        failure,
        approval,
        e.lease.as_ref().map(|l| l.owner.as_str()),
        e.lease.as_ref().map(|l| to_nanos(l.until)),
        to_nanos(e.created_at),
        to_nanos(e.updated_at),
        e.finished_at.map(to_nanos),
    ]);
    match inserted {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(StoreError::new(
                StoreErrorKind::AlreadyExists,
                OP,
                format!("execution {} already exists", e.id),
            ));
        }
        Err(err) => return Err(map(OP, err)),
    }
    insert_events(tx, events)
}

fn insert_events(tx: &Connection, events: &[Arc<Event>]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached("INSERT INTO events (id, execution_id, kind, time, action, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .map_err(|e| map("events", e))?;
    for ev in events {
        stmt.execute(params![
            ev.id.to_string(),
            ev.execution_id.to_string(),
            ev.kind.as_str(),
            to_nanos(ev.time),
            &*ev.action,
            ev.data.as_str(),
        ])
        .map_err(|e| map("events", e))?;
    }
    Ok(())
}

fn current_state(
    tx: &Connection,
    id: ExecutionId,
    op: &'static str,
) -> Result<(ExecutionStatus, Option<Lease>), StoreError> {
    let row: Option<(String, Option<String>, Option<i64>)> = tx
        .prepare_cached("SELECT status, lease_owner, lease_until FROM executions WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(|e| map(op, e))?;
    let (status, owner, until) =
        row.ok_or_else(|| StoreError::not_found(op, format!("execution {id} does not exist")))?;
    let status = status.parse().map_err(|e| crate::error::corrupt(op, e))?;
    let lease = match (owner, until) {
        (Some(owner), Some(until)) => Some(Lease {
            owner,
            until: from_nanos(until),
        }),
        _ => None,
    };
    Ok((status, lease))
}

fn transition(tx: &Connection, t: &Transition) -> Result<(), StoreError> {
    const OP: &str = "transition";
    let (status, lease) = current_state(tx, t.id, OP)?;
    t.check_state(status, lease.as_ref(), Utc::now())?;
    let failure = t.failure.as_ref().map(|f| json_text(OP, f)).transpose()?;
    let approval = t.approval.as_ref().map(|a| json_text(OP, a)).transpose()?;
    let terminal = t.to.is_terminal();
    tx.prepare_cached(
        "UPDATE executions SET status = ?2, updated_at = ?3, \
         finished_at = CASE WHEN ?4 THEN ?3 ELSE finished_at END, \
         output = COALESCE(?5, output), failure = COALESCE(?6, failure), approval = COALESCE(?7, approval), \
         lease_owner = CASE WHEN ?4 THEN NULL ELSE lease_owner END, \
         lease_until = CASE WHEN ?4 THEN NULL ELSE lease_until END \
         WHERE id = ?1 AND status = ?8",
    )
    .and_then(|mut s| {
        s.execute(params![
            t.id.to_string(),
            t.to.as_str(),
            to_nanos(t.at),
            terminal,
            t.output.as_ref().map(|o| o.as_str()),
            failure,
            approval,
            status.as_str(),
        ])
    })
    .map_err(|e| map(OP, e))?;
    if let Some(s) = &t.snapshot {
        tx.prepare_cached("INSERT INTO snapshots (execution_id, checkpoint, captured_at, state) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| {
                st.execute(params![s.execution_id.to_string(), s.checkpoint.as_str(), to_nanos(s.captured_at), s.state.as_str()])
            })
            .map_err(|e| map("snapshot", e))?;
    }
    insert_events(tx, &t.events)?;
    if let Some(record) = &t.audit {
        let last: Option<(i64, String)> = tx
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(|e| map("audit", e))?;
        let (seq, prev) = last.map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s + 1, h));
        let entry = AuditEntry::chain(seq as u64, record.clone(), &prev);
        tx.prepare_cached("INSERT INTO audit (seq, execution_id, record, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| {
                s.execute(params![
                    seq,
                    record.execution_id.to_string(),
                    serde_json::to_string(&entry.record).unwrap_or_default(),
                    entry.prev_hash,
                    entry.hash,
                ])
            })
            .map_err(|e| map("audit", e))?;
    }
    Ok(())
}

fn claim(
    tx: &Connection,
    status: ExecutionStatus,
    owner: &str,
    lease: Duration,
    limit: usize,
) -> Result<Vec<Execution>, StoreError> {
    const OP: &str = "claim";
    let now = Utc::now();
    let until = to_nanos(lease_until(now, lease));
    let sql = format!(
        "UPDATE executions SET lease_owner = ?1, lease_until = ?2 WHERE id IN (\
           SELECT id FROM executions WHERE status = ?3 AND (lease_until IS NULL OR lease_until <= ?4) \
           ORDER BY id LIMIT ?5) RETURNING {EXECUTION_COLUMNS}"
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(|e| map(OP, e))?;
    let mut rows = stmt
        .query(params![
            owner,
            until,
            status.as_str(),
            to_nanos(now),
            limit as i64
        ])
        .map_err(|e| map(OP, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map(OP, e))? {
        out.push(execution(OP, row)?);
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// Extends (`Some(lease)`) or releases (`None`) a lease `owner` holds.
fn renew(
    tx: &Connection,
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
    let (_, current) = current_state(tx, id, op)?;
    if !current.is_some_and(|l| l.owner == owner && l.until > now) {
        return Err(StoreError::conflict(
            op,
            format!("lease on {id} is not held by `{owner}`"),
        ));
    }
    let until = lease.map(|l| to_nanos(lease_until(now, l)));
    tx.prepare_cached(
        "UPDATE executions SET lease_until = ?2, lease_owner = CASE WHEN ?2 IS NULL THEN NULL ELSE lease_owner END \
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id.to_string(), until]))
    .map_err(|e| map(op, e))?;
    Ok(())
}
