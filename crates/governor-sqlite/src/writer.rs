//! The single writer thread: every write goes through it, and writes that
//! arrive together share one transaction and one fsync (group commit).
//! Callers encode rows before handing them over, so the thread only binds
//! text and runs cached statements.

use std::time::Duration;

use chrono::Utc;
use governor_core::store::lease_until;
use governor_core::{
    Change, Creation, Execution, ExecutionId, ExecutionStatus, GENESIS_HASH, Lease, StatusSet,
    StoreError, StoreErrorKind, Transition, chain_hash,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::codec::{EXECUTION_COLUMNS, blob, encode_json, execution, from_nanos, to_nanos};
use crate::error::map;
use rusqlite::types::Value as SqlValue;

/// Most writes committed together.
const MAX_BATCH: usize = 512;

/// An execution row, encoded.
pub(crate) struct Row {
    id: Vec<u8>,
    action: String,
    status: &'static str,
    principal_id: String,
    tenant: Option<String>,
    principal: String,
    inputs: String,
    output: Option<String>,
    failure: Option<String>,
    approval: Option<String>,
    lease: Option<(String, i64)>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    version: i64,
}

/// What is written alongside a row change.
pub(crate) struct Extras {
    snapshot: Option<(Vec<u8>, &'static str, i64, String)>,
    /// Five values per event: id, execution id, kind, time, data.
    events: Vec<SqlValue>,
    audit: Option<(Vec<u8>, String, governor_core::AuditRecord)>,
    notifications: Vec<crate::outbox::Encoded>,
}

pub(crate) struct Update {
    transition: Transition,
    failure: Option<String>,
    approval: Option<String>,
    extras: Extras,
}

pub(crate) enum Op {
    Create(Box<(Row, Extras, Change)>),
    Transition(Box<Update>),
    Claim {
        status: ExecutionStatus,
        owner: String,
        lease: Duration,
        limit: usize,
        abandoned: bool,
        /// Only these actions (a JSON array), or any.
        actions: Option<String>,
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
    PutGrant {
        id: Vec<u8>,
        action: String,
        principal: String,
        json: String,
        until: i64,
    },
    PutPause {
        scope: String,
        json: String,
    },
    RemovePause {
        scope: String,
    },
    RemoveGrant {
        id: Vec<u8>,
    },
    ClaimNotifications {
        owner: String,
        now: i64,
        until: i64,
        limit: usize,
    },
    FinishNotification {
        next: Box<crate::outbox::Encoded>,
        owner: String,
        now: i64,
    },
    RetryNotification {
        id: uuid::Uuid,
        now: chrono::DateTime<Utc>,
    },
}

pub(crate) enum Done {
    Unit,
    Claimed(Vec<Execution>),
    Removed(bool),
    /// The removed grant's JSON, if there was one.
    RemovedGrant(Option<String>),
    /// Notifications claimed or retried.
    Notifications(Vec<governor_core::Notification>),
}

pub(crate) struct Job {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// A write's result, with the write handed back: its memory is then freed
/// on the caller's thread, not on the writer's, which every write waits
/// for (freeing was 5% of its time under load, perf).
pub(crate) type Reply = (Result<Done, StoreError>, Op);

fn extras(
    op: &'static str,
    execution: governor_core::ExecutionId,
    snapshot: Option<&governor_core::Snapshot>,
    events: &[governor_core::EventRecord],
    audit: Option<&governor_core::AuditRecord>,
    notifications: &[governor_core::Notification],
) -> Result<Extras, StoreError> {
    Ok(Extras {
        notifications: notifications
            .iter()
            .map(|n| crate::outbox::encode(op, n))
            .collect::<Result<_, _>>()?,
        snapshot: snapshot.map(|s| {
            (
                blob(s.execution_id.as_uuid()),
                s.checkpoint.as_str(),
                to_nanos(s.captured_at),
                s.state.as_str().to_owned(),
            )
        }),
        events: events
            .iter()
            .flat_map(|e| {
                [
                    SqlValue::Blob(blob(e.id)),
                    SqlValue::Blob(blob(execution.as_uuid())),
                    SqlValue::Text(e.kind.as_str().to_owned()),
                    SqlValue::Integer(to_nanos(e.time)),
                    SqlValue::Text(e.data.as_str().to_owned()),
                ]
            })
            .collect(),
        audit: audit
            .map(|r| {
                Ok::<_, StoreError>((
                    blob(r.execution_id.as_uuid()),
                    encode_json(op, r)?,
                    r.clone(),
                ))
            })
            .transpose()?,
    })
}

/// Encodes a creation on the caller's thread.
pub(crate) fn encode_creation(c: &Creation) -> Result<Op, StoreError> {
    const OP: &str = "create";
    c.check()?;
    let e = &c.execution;
    let row = Row {
        id: blob(e.id.as_uuid()),
        action: e.action.to_string(),
        status: e.status.as_str(),
        principal_id: e.principal.id.clone(),
        tenant: e.principal.tenant.clone(),
        principal: encode_json(OP, &*e.principal)?,
        inputs: e.inputs.as_str().to_owned(),
        output: e.output.as_ref().map(|o| o.as_str().to_owned()),
        failure: e.failure.as_ref().map(|f| encode_json(OP, f)).transpose()?,
        approval: e
            .approval
            .as_ref()
            .map(|a| encode_json(OP, a))
            .transpose()?,
        lease: e
            .lease
            .as_ref()
            .map(|l| (l.owner.clone(), to_nanos(l.until))),
        created_at: to_nanos(e.created_at),
        updated_at: to_nanos(e.updated_at),
        finished_at: e.finished_at.map(to_nanos),
        version: i64::try_from(e.version).unwrap_or(i64::MAX),
    };
    let extras = extras(
        OP,
        c.execution.id,
        c.snapshot.as_ref(),
        &c.events,
        c.audit.as_ref(),
        &c.notifications,
    )?;
    Ok(Op::Create(Box::new((
        row,
        extras,
        Change {
            id: e.id,
            status: e.status,
        },
    ))))
}

/// Encodes a transition on the caller's thread.
pub(crate) fn encode_transition(t: &Transition) -> Result<Op, StoreError> {
    const OP: &str = "transition";
    let extras = extras(
        OP,
        t.id,
        t.snapshot.as_ref(),
        &t.events,
        t.audit.as_ref(),
        &t.notifications,
    )?;
    let mut transition = t.clone();
    transition.events.clear();
    transition.snapshot = None;
    transition.audit = None;
    transition.notifications.clear();
    Ok(Op::Transition(Box::new(Update {
        failure: t.failure.as_ref().map(|f| encode_json(OP, f)).transpose()?,
        approval: t
            .approval
            .as_ref()
            .map(|a| encode_json(OP, a))
            .transpose()?,
        transition,
        extras,
    })))
}

pub(crate) fn spawn(
    mut conn: Connection,
    checkpoints: crate::checkpoint::Checkpoints,
    changes: broadcast::Sender<Change>,
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
                // Counted before committing, so the watcher never takes this
                // batch's commit for another process's.
                commits.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                commit_batch(&mut conn, batch, &changes);
                commits.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                checkpoints.after_commit(&conn, !rx.is_empty());
            }
        })?;
    Ok(tx)
}

/// The head of the audit chain, read once per batch (the batch holds the
/// write lock, so no other writer can move it meanwhile).
#[derive(Default)]
struct ChainHead(Option<(i64, String)>);

impl ChainHead {
    fn get(&mut self, conn: &Connection) -> Result<(i64, String), StoreError> {
        if let Some(head) = &self.0 {
            return Ok(head.clone());
        }
        let last: Option<(i64, String)> = conn
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(|e| map("audit", e))?;
        let head = last.unwrap_or((0, GENESIS_HASH.to_owned()));
        self.0 = Some(head.clone());
        Ok(head)
    }
}

fn fail_all(batch: Vec<Job>, err: &StoreError) {
    for job in batch {
        let failed = Err(StoreError::new(err.kind(), err.op(), err.to_string()));
        let _ = job.reply.send((failed, job.op));
    }
}

/// Commits a batch in one transaction. Most batches have no failing
/// write, so they first run without a savepoint per write (two statements
/// and a page journal each); only when a write fails does the batch run
/// again with savepoints, so that the failure undoes that write alone.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>, changes: &broadcast::Sender<Change>) {
    let outcome = match run_batch(conn, &batch, Isolation::Together) {
        Ok(Some(outcome)) => Ok(outcome),
        // Run write by write, a batch always completes.
        Ok(None) => run_batch(conn, &batch, Isolation::PerWrite).and_then(|o| {
            o.ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Other,
                    "commit",
                    "the batch was not isolated",
                )
            })
        }),
        Err(e) => Err(e),
    };
    let (results, announced) = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return fail_all(batch, &e),
    };
    for (job, result) in batch.into_iter().zip(results) {
        let _ = job.reply.send((result, job.op));
    }
    if changes.receiver_count() > 0 {
        for c in announced {
            let _ = changes.send(c);
        }
    }
}

/// How the writes of a batch are isolated from each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// One transaction, no savepoints: a failing write fails the attempt.
    Together,
    /// A savepoint per write: a failing write is rolled back alone.
    PerWrite,
}

/// Each write's result and the changes to announce.
type Outcome = (Vec<Result<Done, StoreError>>, Vec<Change>);

/// Runs and commits `batch`. `Ok(None)`: a write failed while running
/// [`Isolation::Together`], and the transaction was rolled back.
fn run_batch(
    conn: &mut Connection,
    batch: &[Job],
    isolation: Isolation,
) -> Result<Option<Outcome>, StoreError> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| map("begin", e))?;
    let mut head = ChainHead::default();
    let mut results = Vec::with_capacity(batch.len());
    let mut announced = Vec::new();
    for job in batch {
        let result = match isolation {
            Isolation::Together => apply(&tx, &job.op, &mut head),
            Isolation::PerWrite => match tx.savepoint() {
                Ok(sp) => match apply(&sp, &job.op, &mut head) {
                    Ok(done) => sp.commit().map(|_| done).map_err(|e| map("commit", e)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(map("savepoint", e)),
            },
        };
        match (&result, &job.op) {
            // Dropping the transaction rolls it back.
            (Err(_), _) if isolation == Isolation::Together => return Ok(None),
            (Ok(_), Op::Create(c)) => announced.push(c.2.clone()),
            (Ok(_), Op::Transition(u)) => {
                announced.push(Change {
                    id: u.transition.id,
                    status: u.transition.to,
                });
            }
            // A failed write may have moved the cached chain head.
            (Err(_), _) => head = ChainHead::default(),
            _ => {}
        }
        results.push(result);
    }
    tx.commit().map_err(|e| map("commit", e))?;
    Ok(Some((results, announced)))
}

fn apply(conn: &Connection, op: &Op, head: &mut ChainHead) -> Result<Done, StoreError> {
    match op {
        Op::Create(c) => create(conn, &c.0, &c.1, head).map(|()| Done::Unit),
        Op::Transition(u) => transition(conn, u, head).map(|()| Done::Unit),
        Op::Claim { status, owner, lease, limit, abandoned, actions } => {
            let free = Free { status: *status, abandoned: *abandoned, actions: actions.as_deref() };
            claim(conn, &free, owner, *lease, *limit).map(Done::Claimed)
        }
        Op::Renew { id, owner, lease } => {
            renew(conn, *id, owner, Some(*lease)).map(|()| Done::Unit)
        }
        Op::Release { id, owner } => renew(conn, *id, owner, None).map(|()| Done::Unit),
        Op::PutGrant { id, action, principal, json, until } => conn
            .prepare_cached(
                "INSERT INTO grants (id, action, principal_id, grant_json, until) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, action, principal, json, until]))
            .map(|_| Done::Unit)
            .map_err(|e| map("put_grant", e)),
        Op::PutPause { scope, json } => conn
            .prepare_cached("INSERT OR REPLACE INTO pauses (scope, pause_json) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![scope, json]))
            .map(|_| Done::Unit)
            .map_err(|e| map("put_pause", e)),
        Op::RemovePause { scope } => conn
            .prepare_cached("DELETE FROM pauses WHERE scope = ?1")
            .and_then(|mut s| s.execute(params![scope]))
            .map(|n| Done::Removed(n > 0))
            .map_err(|e| map("remove_pause", e)),
        Op::RemoveGrant { id } => conn
            .prepare_cached("DELETE FROM grants WHERE id = ?1 RETURNING grant_json")
            .and_then(|mut s| {
                s.query_row(params![id], |r| r.get::<_, String>(0))
                    .optional()
            })
            .map(Done::RemovedGrant)
            .map_err(|e| map("remove_grant", e)),
        Op::ClaimNotifications { owner, now, until, limit } => {
            crate::outbox::claim(conn, owner, *now, *until, *limit).map(Done::Notifications)
        }
        Op::FinishNotification { next, owner, now } => {
            crate::outbox::finish(conn, next, owner, *now).map(Done::Removed)
        }
        Op::RetryNotification { id, now } => crate::outbox::retry(conn, *id, *now)
            .map(|n| Done::Notifications(n.into_iter().collect())),
    }
}

fn create(
    conn: &Connection,
    r: &Row,
    extras: &Extras,
    head: &mut ChainHead,
) -> Result<(), StoreError> {
    const OP: &str = "create";
    let inserted = conn
        .prepare_cached(
            "INSERT INTO executions (id, action, status, principal_id, tenant, principal, inputs, output, \
             failure, approval, lease_owner, lease_until, created_at, updated_at, finished_at, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                r.id,
                r.action,
                r.status,
                r.principal_id,
                r.tenant,
                r.principal,
                r.inputs,
                r.output,
                r.failure,
                r.approval,
                r.lease.as_ref().map(|l| l.0.as_str()),
                r.lease.as_ref().map(|l| l.1),
                r.created_at,
                r.updated_at,
                r.finished_at,
                r.version,
            ])
        });
    match inserted {
        Ok(_) => {}
        // 1555: SQLITE_CONSTRAINT_PRIMARYKEY.
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.extended_code == 1555 => {
            return Err(StoreError::new(
                StoreErrorKind::AlreadyExists,
                OP,
                format!(
                    "execution {} already exists",
                    uuid::Uuid::from_slice(&r.id).unwrap_or_default()
                ),
            ));
        }
        Err(err) => return Err(map(OP, err)),
    }
    write_extras(conn, extras, head)
}

fn write_extras(conn: &Connection, x: &Extras, head: &mut ChainHead) -> Result<(), StoreError> {
    if let Some((id, checkpoint, at, state)) = &x.snapshot {
        conn.prepare_cached("INSERT INTO snapshots (execution_id, checkpoint, captured_at, state) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| st.execute(params![id, checkpoint, at, state]))
            .map_err(|e| map("snapshot", e))?;
    }
    for chunk in x.events.chunks(8 * 5) {
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len() / 5].join(", ");
        // OR FAIL: a statement that may abort halfway through several rows
        // keeps a statement journal to undo its own rows (a page copy per
        // page touched). A failing write is undone by the batch's rollback
        // or its savepoint instead, so the statement need not.
        let sql = format!(
            "INSERT OR FAIL INTO events (id, execution_id, kind, time, data) VALUES {rows}"
        );
        conn.prepare_cached(&sql)
            .and_then(|mut st| st.execute(params_from_iter(chunk.iter())))
            .map_err(|e| map("events", e))?;
    }
    if let Some((execution_id, record, parsed)) = &x.audit {
        let (seq, prev) = head.get(conn)?;
        let seq = seq + 1;
        let hash = chain_hash(&prev, seq as u64, parsed);
        conn.prepare_cached(
            "INSERT INTO audit (seq, execution_id, record, hash) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![seq, execution_id, record, hash]))
        .map_err(|e| map("audit", e))?;
        head.0 = Some((seq, hash));
    }
    crate::outbox::insert(conn, &x.notifications)
}

fn current_state(
    conn: &Connection,
    id: ExecutionId,
    op: &'static str,
) -> Result<(ExecutionStatus, Option<Lease>, u64), StoreError> {
    type Found = (String, Option<String>, Option<i64>, i64);
    let row: Option<Found> = conn
        .prepare_cached(
            "SELECT status, lease_owner, lease_until, version FROM executions WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([blob(id.as_uuid())], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(|e| map(op, e))?;
    let (status, owner, until, version) =
        row.ok_or_else(|| StoreError::not_found(op, format!("execution {id} does not exist")))?;
    let status = status.parse().map_err(|e| StoreError::corrupt(op, e))?;
    let lease = match (owner, until) {
        (Some(owner), Some(until)) => Some(Lease {
            owner,
            until: from_nanos(until),
        }),
        _ => None,
    };
    Ok((status, lease, u64::try_from(version).unwrap_or(0)))
}

fn transition(conn: &Connection, u: &Update, head: &mut ChainHead) -> Result<(), StoreError> {
    const OP: &str = "transition";
    let t = &u.transition;
    // Only the expected statuses the state machine allows can match; the
    // lease condition is part of the same statement, so a successful update
    // needs no read first. When nothing matched, a read explains why.
    let valid = t
        .from
        .iter()
        .filter(|s| s.can_become(t.to))
        .fold(StatusSet::EMPTY, StatusSet::with);
    let statuses: Vec<&str> = valid.iter().map(ExecutionStatus::as_str).collect();
    let now = to_nanos(Utc::now());
    let updated = if statuses.is_empty() {
        0
    } else {
        let marks = vec!["?"; statuses.len()].join(", ");
        let sql = format!(
            "UPDATE OR FAIL executions SET status = ?1, updated_at = ?2, version = version + 1, \
             finished_at = CASE WHEN ?3 THEN ?2 ELSE finished_at END, \
             output = COALESCE(?4, output), failure = COALESCE(?5, failure), approval = COALESCE(?6, approval), \
             lease_owner = CASE WHEN ?3 THEN NULL ELSE COALESCE(?11, CASE WHEN ?13 THEN NULL ELSE lease_owner END) END, \
             lease_until = CASE WHEN ?3 THEN NULL ELSE COALESCE(?12, CASE WHEN ?13 THEN NULL ELSE lease_until END) END \
             WHERE id = ?7 AND (?8 IS NULL OR (lease_owner = ?8 AND lease_until > ?9)) \
             AND (?10 IS NULL OR version = ?10) AND status IN ({marks})"
        );
        let terminal = t.to.is_terminal();
        let mut values: Vec<rusqlite::types::Value> = vec![
            t.to.as_str().to_owned().into(),
            to_nanos(t.at).into(),
            i64::from(terminal).into(),
            t.output.as_ref().map(|o| o.as_str().to_owned()).into(),
            u.failure.clone().into(),
            u.approval.clone().into(),
            blob(t.id.as_uuid()).into(),
            t.lease_owner.clone().into(),
            now.into(),
            t.expect_version.and_then(|v| i64::try_from(v).ok()).into(),
            t.lease.as_ref().map(|l| l.owner.clone()).into(),
            t.lease.as_ref().map(|l| to_nanos(l.until)).into(),
            i64::from(t.clear_lease).into(),
        ];
        values.extend(
            statuses
                .iter()
                .map(|s| rusqlite::types::Value::from((*s).to_owned())),
        );
        conn.prepare_cached(&sql)
            .and_then(|mut s| s.execute(params_from_iter(values)))
            .map_err(|e| map(OP, e))?
    };
    if updated == 0 {
        let (status, lease, version) = current_state(conn, t.id, OP)?;
        return Err(t.explain_miss(Some((status, lease.as_ref(), version))));
    }
    write_extras(conn, &u.extras, head)
}

/// Which executions a claim may take.
struct Free<'a> {
    status: ExecutionStatus,
    /// Abandoned work had a lease that lapsed; free work has none or a
    /// lapsed one.
    abandoned: bool,
    /// Only these actions (a JSON array), or any.
    actions: Option<&'a str>,
}

fn claim(
    conn: &Connection,
    free: &Free<'_>,
    owner: &str,
    lease: Duration,
    limit: usize,
) -> Result<Vec<Execution>, StoreError> {
    const OP: &str = "claim";
    let now = Utc::now();
    let until = to_nanos(lease_until(now, lease));
    let lapsed = if free.abandoned {
        "lease_until IS NOT NULL AND lease_until <= ?4"
    } else {
        "(lease_until IS NULL OR lease_until <= ?4)"
    };
    let sql = format!(
        "UPDATE executions SET lease_owner = ?1, lease_until = ?2 WHERE id IN (\
           SELECT id FROM executions WHERE status = ?3 AND {lapsed} \
           AND (?6 IS NULL OR action IN (SELECT value FROM json_each(?6))) \
           ORDER BY id LIMIT ?5) RETURNING {EXECUTION_COLUMNS}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| map(OP, e))?;
    let mut rows = stmt
        .query(params![
            owner,
            until,
            free.status.as_str(),
            to_nanos(now),
            limit as i64,
            free.actions,
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
    conn: &Connection,
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
    let (_, current, _) = current_state(conn, id, op)?;
    if !current.is_some_and(|l| l.owner == owner && l.until > now) {
        return Err(StoreError::conflict(
            op,
            format!("lease on {id} is not held by `{owner}`"),
        ));
    }
    let until = lease.map(|l| to_nanos(lease_until(now, l)));
    conn.prepare_cached(
        "UPDATE executions SET lease_until = ?2, lease_owner = CASE WHEN ?2 IS NULL THEN NULL ELSE lease_owner END \
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![blob(id.as_uuid()), until]))
    .map_err(|e| map(op, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use governor_core::{Execution, Json, Principal};

    use super::*;

    fn creation(action: &str) -> Creation {
        let inputs = Json::parse("{}").unwrap();
        Creation::new(Execution::new(
            action.into(),
            Arc::new(Principal::new("p")),
            inputs,
        ))
    }

    #[test]
    fn a_failing_write_fails_alone_and_the_rest_of_its_batch_commits() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let (a, b) = (creation("a"), creation("b"));
        let (jobs, replies): (Vec<_>, Vec<_>) = [&a, &a, &b]
            .into_iter()
            .map(|c| {
                let (reply, rx) = oneshot::channel();
                let op = encode_creation(c).unwrap();
                (Job { op, reply }, rx)
            })
            .unzip();
        let (changes, mut announced) = broadcast::channel(16);
        commit_batch(&mut conn, jobs, &changes);
        let kinds: Vec<_> = replies
            .into_iter()
            .map(|r| r.blocking_recv().unwrap().0.err().map(|e| e.kind()))
            .collect();
        assert_eq!(kinds, [None, Some(StoreErrorKind::AlreadyExists), None]);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM executions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
        let ids: Vec<_> = std::iter::from_fn(|| announced.try_recv().ok().map(|c| c.id)).collect();
        assert_eq!(ids, [a.execution.id, b.execution.id]);
    }
}
