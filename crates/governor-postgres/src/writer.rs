//! The writer task: creations and transitions that arrive together share
//! one transaction (group commit), and each kind of row in the batch is
//! written with one statement over arrays (`unnest`), pipelined, so a
//! batch costs 3 or 4 round trips however many calls it carries.
//!
//! A statement error aborts a PostgreSQL transaction, so when a batch
//! fails each of its writes is tried again alone: one bad write fails
//! only itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use governor_core::{
    AuditRecord, Change, Creation, EventRecord, ExecutionId, ExecutionStatus, GENESIS_HASH,
    Snapshot, StatusSet, StoreError, StoreErrorKind, Transition, chain_hash,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::codec::{encode_json, from_nanos, to_nanos};
use crate::conn::Conn;
use crate::error::map;

/// Most writes committed together.
const MAX_BATCH: usize = 512;
/// Longest NOTIFY payload sent (the server's limit is 8,000 bytes).
const MAX_PAYLOAD: usize = 7_800;

/// A write waiting for the writer.
pub(crate) struct Job {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// A creation or transition, encoded on the caller's task.
pub(crate) enum Op {
    Create(Box<NewExecution>),
    Transition(Box<Update>),
}

impl Op {
    fn id(&self) -> Uuid {
        match self {
            Op::Create(c) => c.id,
            Op::Transition(u) => u.t.id.as_uuid(),
        }
    }

    fn extras(&self) -> &Extras {
        match self {
            Op::Create(c) => &c.extras,
            Op::Transition(u) => &u.extras,
        }
    }

    fn change(&self) -> Change {
        match self {
            Op::Create(c) => c.change.clone(),
            Op::Transition(u) => Change {
                id: u.t.id,
                status: u.t.to,
            },
        }
    }
}

pub(crate) struct NewExecution {
    id: Uuid,
    action: String,
    status: &'static str,
    principal_id: String,
    tenant: Option<String>,
    principal: String,
    inputs: String,
    output: Option<String>,
    failure: Option<String>,
    approval: Option<String>,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    version: i64,
    change: Change,
    extras: Extras,
}

pub(crate) struct Update {
    /// The transition without its events, snapshot and audit record.
    t: Transition,
    output: Option<String>,
    failure: Option<String>,
    approval: Option<String>,
    extras: Extras,
}

/// What is written alongside an execution row.
pub(crate) struct Extras {
    /// The execution the events belong to.
    execution: ExecutionId,
    snapshot: Option<Snapshot>,
    events: Vec<EventRecord>,
    audit: Option<(String, AuditRecord)>,
    notifications: Vec<crate::outbox::Encoded>,
}

fn extras(
    op: &'static str,
    execution: ExecutionId,
    snapshot: Option<&Snapshot>,
    events: &[EventRecord],
    audit: Option<&AuditRecord>,
    notifications: &[governor_core::Notification],
) -> Result<Extras, StoreError> {
    Ok(Extras {
        notifications: notifications
            .iter()
            .map(|n| crate::outbox::encode(op, n))
            .collect::<Result<_, _>>()?,
        execution,
        snapshot: snapshot.cloned(),
        events: events.to_vec(),
        audit: audit
            .map(|r| Ok::<_, StoreError>((encode_json(op, r)?, r.clone())))
            .transpose()?,
    })
}

/// Encodes a creation.
pub(crate) fn encode_creation(c: &Creation) -> Result<Op, StoreError> {
    const OP: &str = "create";
    c.check()?;
    let e = &c.execution;
    Ok(Op::Create(Box::new(NewExecution {
        id: e.id.as_uuid(),
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
        lease_owner: e.lease.as_ref().map(|l| l.owner.clone()),
        lease_until: e.lease.as_ref().map(|l| to_nanos(l.until)),
        created_at: to_nanos(e.created_at),
        updated_at: to_nanos(e.updated_at),
        finished_at: e.finished_at.map(to_nanos),
        version: i64::try_from(e.version).unwrap_or(i64::MAX),
        change: Change {
            id: e.id,
            status: e.status,
        },
        extras: extras(
            OP,
            e.id,
            c.snapshot.as_ref(),
            &c.events,
            c.audit.as_ref(),
            &c.notifications,
        )?,
    })))
}

/// Encodes a transition.
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
    let mut bare = t.clone();
    bare.events.clear();
    bare.snapshot = None;
    bare.audit = None;
    bare.notifications.clear();
    Ok(Op::Transition(Box::new(Update {
        output: t.output.as_ref().map(|o| o.as_str().to_owned()),
        failure: t.failure.as_ref().map(|f| encode_json(OP, f)).transpose()?,
        approval: t
            .approval
            .as_ref()
            .map(|a| encode_json(OP, a))
            .transpose()?,
        t: bare,
        extras,
    })))
}

/// Where the writer connects and announces.
pub(crate) struct Target {
    pub(crate) endpoint: crate::conn::Endpoint,
    pub(crate) schema: String,
    /// This store handle's id in notifications, so it skips its own.
    pub(crate) instance: String,
    pub(crate) changes: broadcast::Sender<Change>,
}

/// Starts one writer task per connection in `conns`. They share one
/// queue: while one commits its batch, the next collects the writes that
/// arrive meanwhile, so commits overlap instead of queueing.
pub(crate) fn spawn(conns: Vec<Conn>, target: Target) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let target = Arc::new(target);
    for conn in conns {
        let (rx, target) = (Arc::clone(&rx), Arc::clone(&target));
        tokio::spawn(async move {
            let mut conn = Some(conn);
            while let Some(batch) = next_batch(&rx).await {
                let c = match conn.take() {
                    Some(c) if !c.client().is_closed() => c,
                    _ => match Conn::open(&target.endpoint, &target.schema).await {
                        Ok(c) => c,
                        Err(e) => {
                            fail_all(batch, &e);
                            continue;
                        }
                    },
                };
                run_batch(&c, batch, &target).await;
                conn = Some(c);
            }
        });
    }
    tx
}

/// The next write and whatever else is already waiting; `None` once the
/// store is dropped.
async fn next_batch(rx: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>) -> Option<Vec<Job>> {
    let mut rx = rx.lock().await;
    let mut batch = vec![rx.recv().await?];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn fail_all(batch: Vec<Job>, err: &StoreError) {
    for job in batch {
        let _ = job.reply.send(Err(err.without_source()));
    }
}

async fn run_batch(conn: &Conn, batch: Vec<Job>, target: &Target) {
    let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
    match commit(conn, &ops, target).await {
        Ok(results) => finish(batch, results, target),
        Err(e) if batch.len() == 1 => fail_all(batch, &e),
        Err(e) => {
            tracing::debug!(error = %e, writes = batch.len(), "batch failed; writing one by one");
            for job in batch {
                let result = commit(conn, &[&job.op], target).await;
                match result {
                    Ok(results) => finish(vec![job], results, target),
                    Err(e) => fail_all(vec![job], &e),
                }
            }
        }
    }
}

fn finish(batch: Vec<Job>, results: Vec<Result<(), StoreError>>, target: &Target) {
    let mut announced = Vec::new();
    for (job, result) in batch.into_iter().zip(results) {
        if result.is_ok() {
            announced.push(job.op.change());
        }
        let _ = job.reply.send(result);
    }
    if target.changes.receiver_count() > 0 {
        for c in announced {
            let _ = target.changes.send(c);
        }
    }
}

/// Writes `ops` in one transaction; the outer error means nothing was
/// committed, the inner results say which writes took effect.
async fn commit(
    conn: &Conn,
    ops: &[&Op],
    target: &Target,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let outcome = write(conn, ops, target).await;
    if outcome.is_err() {
        // Usually the transaction is already gone (a failed statement, or
        // a COMMIT that rolled back); this makes sure.
        let _ = conn.client().batch_execute("ROLLBACK").await;
    }
    outcome
}

/// The statements of one batch, pipelined: each group is sent without
/// waiting for the previous answer, so a batch takes 3 round trips (4 with
/// audit records) instead of one per statement. A statement that fails
/// aborts the transaction, so everything after it fails too and the
/// COMMIT rolls back; any error therefore means nothing was committed.
async fn write(
    conn: &Conn,
    ops: &[&Op],
    target: &Target,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    prepare(conn).await?;
    let c = conn.client();
    let (begun, inserted, updated) = tokio::join!(
        async { c.batch_execute("BEGIN").await.map_err(|e| map("begin", e)) },
        insert_executions(conn, ops),
        update_executions(conn, ops),
    );
    begun?;
    let mut results = inserted?;
    for (r, u) in results.iter_mut().zip(updated?) {
        if r.is_none() {
            *r = u;
        }
    }
    let done: Vec<&Op> = ops
        .iter()
        .zip(&results)
        .filter(|(_, r)| matches!(r, Some(Ok(()))))
        .map(|(op, _)| *op)
        .collect();
    let audit: Vec<&(String, AuditRecord)> = done
        .iter()
        .filter_map(|op| op.extras().audit.as_ref())
        .collect();
    let (snapshots, events, outbox, head) = tokio::join!(
        insert_snapshots(conn, &done),
        insert_events(conn, &done),
        insert_outbox(conn, &done),
        lock_audit_head(conn, !audit.is_empty(), &target.schema),
    );
    snapshots?;
    events?;
    outbox?;
    let head = head?;
    let (appended, notified, committed) = tokio::join!(
        append_audit(conn, &audit, head),
        notify(conn, &done, target),
        async {
            c.batch_execute("COMMIT")
                .await
                .map_err(|e| map("commit", e))
        },
    );
    appended?;
    notified?;
    committed?;
    Ok(results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(StoreError::new(
                    StoreErrorKind::Other,
                    "write",
                    "write was not applied",
                ))
            })
        })
        .collect())
}

const SNAPSHOTS: &str = "INSERT INTO snapshots (execution_id, captured_at, checkpoint, state) \
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[])";
const EVENTS: &str = "INSERT INTO events (id, execution_id, kind, time, data) \
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[])";
const AUDIT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";
const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
const AUDIT_INSERT: &str = "INSERT INTO audit (seq, execution_id, record, hash) \
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[])";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Prepares every statement a batch sends (once per connection). A
/// statement prepared in the middle of a pipeline would be sent after the
/// ones behind it, the COMMIT among them.
async fn prepare(conn: &Conn) -> Result<(), StoreError> {
    for sql in [
        INSERT_EXECUTIONS,
        UPDATE_EXECUTIONS,
        SNAPSHOTS,
        EVENTS,
        AUDIT_LOCK,
        AUDIT_HEAD,
        AUDIT_INSERT,
        NOTIFY,
        crate::outbox::INSERT,
    ] {
        conn.statement("prepare", sql).await?;
    }
    Ok(())
}

/// Which writes of a batch took effect (`None`: not this statement's).
type Results = Vec<Option<Result<(), StoreError>>>;

fn no_results(n: usize) -> Results {
    (0..n).map(|_| None).collect()
}

const INSERT_EXECUTIONS: &str = "INSERT INTO executions (id, action, status, principal_id, tenant, \
    principal, inputs, output, failure, approval, lease_owner, lease_until, created_at, updated_at, \
    finished_at, version) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
    $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
    $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[]) \
    ON CONFLICT (id) DO NOTHING RETURNING id";

async fn insert_executions(conn: &Conn, ops: &[&Op]) -> Result<Results, StoreError> {
    const OP: &str = "create";
    let mut results = no_results(ops.len());
    let rows: Vec<(usize, &NewExecution)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Create(c) => Some((i, &**c)),
            Op::Transition(_) => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(results);
    }
    macro_rules! column {
        ($f:ident) => {
            rows.iter().map(|(_, r)| r.$f.clone()).collect::<Vec<_>>()
        };
    }
    let stmt = conn.statement(OP, INSERT_EXECUTIONS).await?;
    let inserted = conn
        .client()
        .query(
            &stmt,
            &[
                &column!(id),
                &column!(action),
                &column!(status),
                &column!(principal_id),
                &column!(tenant),
                &column!(principal),
                &column!(inputs),
                &column!(output),
                &column!(failure),
                &column!(approval),
                &column!(lease_owner),
                &column!(lease_until),
                &column!(created_at),
                &column!(updated_at),
                &column!(finished_at),
                &column!(version),
            ],
        )
        .await
        .map_err(|e| map(OP, e))?;
    let mut inserted: HashSet<Uuid> = inserted.iter().map(|r| r.get(0)).collect();
    for (i, r) in rows {
        // `remove`: of two creations of one id in a batch, only the first
        // was inserted.
        results[i] = Some(if inserted.remove(&r.id) {
            Ok(())
        } else {
            Err(StoreError::new(
                StoreErrorKind::AlreadyExists,
                OP,
                format!("execution {} already exists", r.id),
            ))
        });
    }
    Ok(results)
}

const UPDATE_EXECUTIONS: &str = "UPDATE executions AS x SET status = t.to_status, updated_at = t.at, \
    version = x.version + 1, \
    finished_at = CASE WHEN t.terminal THEN t.at ELSE x.finished_at END, \
    output = COALESCE(t.output, x.output), failure = COALESCE(t.failure, x.failure), \
    approval = COALESCE(t.approval, x.approval), \
    lease_owner = CASE WHEN t.terminal THEN NULL ELSE COALESCE(t.new_owner, CASE WHEN t.clear_lease THEN NULL ELSE x.lease_owner END) END, \
    lease_until = CASE WHEN t.terminal THEN NULL ELSE COALESCE(t.new_until, CASE WHEN t.clear_lease THEN NULL ELSE x.lease_until END) END \
    FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bool[], $5::text[], $6::text[], $7::text[], \
    $8::text[], $9::bigint[], $10::text[], $11::bigint[], $12::bool[], $13::text[]) \
    AS t(id, to_status, at, terminal, output, failure, approval, need_owner, expect_version, \
    new_owner, new_until, clear_lease, from_set) \
    WHERE x.id = t.id AND x.status = ANY(string_to_array(t.from_set, ',')) \
    AND (t.need_owner IS NULL OR (x.lease_owner = t.need_owner AND x.lease_until > $14)) \
    AND (t.expect_version IS NULL OR x.version = t.expect_version) RETURNING x.id";

async fn update_executions(conn: &Conn, ops: &[&Op]) -> Result<Results, StoreError> {
    let mut results = no_results(ops.len());
    let mut pending: Vec<(usize, &Update)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Transition(u) => Some((i, &**u)),
            Op::Create(_) => None,
        })
        .collect();
    // One statement changes a row at most once, so two transitions of one
    // execution in a batch go in successive rounds, in the order they came.
    while !pending.is_empty() {
        let mut seen = HashSet::new();
        let (round, later): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, u)| seen.insert(u.t.id));
        update_round(conn, &round, &mut results).await?;
        pending = later;
    }
    Ok(results)
}

async fn update_round(
    conn: &Conn,
    round: &[(usize, &Update)],
    results: &mut Results,
) -> Result<(), StoreError> {
    const OP: &str = "transition";
    macro_rules! column {
        ($e:expr) => {
            round.iter().map(|(_, u)| $e(u)).collect::<Vec<_>>()
        };
    }
    // Only the expected statuses the state machine allows can match.
    let from_set = |u: &&Update| {
        let t = &u.t;
        t.from
            .iter()
            .filter(|s| s.can_become(t.to))
            .fold(StatusSet::EMPTY, StatusSet::with)
            .iter()
            .map(ExecutionStatus::as_str)
            .collect::<Vec<_>>()
            .join(",")
    };
    let stmt = conn.statement(OP, UPDATE_EXECUTIONS).await?;
    let now = to_nanos(Utc::now());
    let updated = conn
        .client()
        .query(
            &stmt,
            &[
                &column!(|u: &&Update| u.t.id.as_uuid()),
                &column!(|u: &&Update| u.t.to.as_str()),
                &column!(|u: &&Update| to_nanos(u.t.at)),
                &column!(|u: &&Update| u.t.to.is_terminal()),
                &column!(|u: &&Update| u.output.clone()),
                &column!(|u: &&Update| u.failure.clone()),
                &column!(|u: &&Update| u.approval.clone()),
                &column!(|u: &&Update| u.t.lease_owner.clone()),
                &column!(|u: &&Update| u.t.expect_version.and_then(|v| i64::try_from(v).ok())),
                &column!(|u: &&Update| u.t.lease.as_ref().map(|l| l.owner.clone())),
                &column!(|u: &&Update| u.t.lease.as_ref().map(|l| to_nanos(l.until))),
                &column!(|u: &&Update| u.t.clear_lease),
                &column!(from_set),
                &now,
            ],
        )
        .await
        .map_err(|e| map(OP, e))?;
    let updated: HashSet<Uuid> = updated.iter().map(|r| r.get(0)).collect();
    let missed: Vec<&(usize, &Update)> = round
        .iter()
        .filter(|(_, u)| !updated.contains(&u.t.id.as_uuid()))
        .collect();
    let states = if missed.is_empty() {
        HashMap::new()
    } else {
        current_states(conn, missed.iter().map(|(_, u)| u.t.id.as_uuid()).collect()).await?
    };
    for (i, u) in round {
        results[*i] = Some(if updated.contains(&u.t.id.as_uuid()) {
            Ok(())
        } else {
            explain(&u.t, states.get(&u.t.id.as_uuid()))
        });
    }
    Ok(())
}

type State = (ExecutionStatus, Option<governor_core::Lease>, u64);

async fn current_states(conn: &Conn, ids: Vec<Uuid>) -> Result<HashMap<Uuid, State>, StoreError> {
    const OP: &str = "transition";
    let stmt = conn
        .statement(
            OP,
            "SELECT id, status, lease_owner, lease_until, version FROM executions WHERE id = ANY($1)",
        )
        .await?;
    let rows = conn
        .client()
        .query(&stmt, &[&ids])
        .await
        .map_err(|e| map(OP, e))?;
    let mut out = HashMap::new();
    for row in rows {
        use crate::codec::get;
        let status: ExecutionStatus = get::<&str>(OP, &row, 1)?
            .parse()
            .map_err(|e| StoreError::corrupt(OP, e))?;
        let lease = match (
            get::<Option<String>>(OP, &row, 2)?,
            get::<Option<i64>>(OP, &row, 3)?,
        ) {
            (Some(owner), Some(until)) => Some(governor_core::Lease {
                owner,
                until: from_nanos(until),
            }),
            _ => None,
        };
        let version = u64::try_from(get::<i64>(OP, &row, 4)?).unwrap_or(0);
        out.insert(get(OP, &row, 0)?, (status, lease, version));
    }
    Ok(out)
}

/// Why a transition matched no row.
fn explain(t: &Transition, state: Option<&State>) -> Result<(), StoreError> {
    Err(t.explain_miss(state.map(|(s, l, v)| (*s, l.as_ref(), *v))))
}

async fn insert_snapshots(conn: &Conn, done: &[&Op]) -> Result<(), StoreError> {
    const OP: &str = "snapshot";
    let snapshots: Vec<&Snapshot> = done
        .iter()
        .filter_map(|op| op.extras().snapshot.as_ref())
        .collect();
    if snapshots.is_empty() {
        return Ok(());
    }
    let stmt = conn.statement(OP, SNAPSHOTS).await?;
    let ids: Vec<Uuid> = snapshots.iter().map(|s| s.execution_id.as_uuid()).collect();
    let at: Vec<i64> = snapshots.iter().map(|s| to_nanos(s.captured_at)).collect();
    let cp: Vec<&str> = snapshots.iter().map(|s| s.checkpoint.as_str()).collect();
    let state: Vec<&str> = snapshots.iter().map(|s| s.state.as_str()).collect();
    conn.client()
        .execute(&stmt, &[&ids, &at, &cp, &state])
        .await
        .map_err(|e| map(OP, e))?;
    Ok(())
}

async fn insert_events(conn: &Conn, done: &[&Op]) -> Result<(), StoreError> {
    const OP: &str = "events";
    let events: Vec<(ExecutionId, &EventRecord)> = done
        .iter()
        .flat_map(|op| {
            let x = op.extras();
            x.events.iter().map(move |e| (x.execution, e))
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let stmt = conn.statement(OP, EVENTS).await?;
    let xs: Vec<Uuid> = events.iter().map(|(x, _)| x.as_uuid()).collect();
    let events: Vec<&EventRecord> = events.into_iter().map(|(_, e)| e).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let times: Vec<i64> = events.iter().map(|e| to_nanos(e.time)).collect();
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    conn.client()
        .execute(&stmt, &[&ids, &xs, &kinds, &times, &data])
        .await
        .map_err(|e| map(OP, e))?;
    Ok(())
}

/// The outbox rows of the batch's writes that took effect.
async fn insert_outbox(conn: &Conn, done: &[&Op]) -> Result<(), StoreError> {
    const OP: &str = "outbox";
    let rows: Vec<&crate::outbox::Encoded> = done
        .iter()
        .flat_map(|op| op.extras().notifications.iter())
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = conn.statement(OP, crate::outbox::INSERT).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let executions: Vec<Uuid> = rows.iter().map(|r| r.execution_id).collect();
    let states: Vec<&str> = rows.iter().map(|r| r.state).collect();
    let due: Vec<i64> = rows.iter().map(|r| r.due).collect();
    let json: Vec<&str> = rows.iter().map(|r| r.json.as_str()).collect();
    conn.client()
        .execute(&stmt, &[&ids, &executions, &states, &due, &json])
        .await
        .map_err(|e| map(OP, e))?;
    Ok(())
}

/// The audit chain's head (last seq and hash), read under the chain's
/// lock when this batch has records to append (`None` otherwise). The
/// chain has one head, so appends from every instance take turns on an
/// advisory lock held until the transaction ends: once per batch, not
/// once per record. The head is read by a statement of its own, after the
/// lock is held, so it sees the previous holder's commit.
async fn lock_audit_head(
    conn: &Conn,
    needed: bool,
    schema: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    const OP: &str = "audit";
    if !needed {
        return Ok(None);
    }
    let c = conn.client();
    let lock = conn.statement(OP, AUDIT_LOCK).await?;
    c.execute(&lock, &[&format!("governor.audit.{schema}")])
        .await
        .map_err(|e| map(OP, e))?;
    let head = conn.statement(OP, AUDIT_HEAD).await?;
    Ok(Some(
        match c.query_opt(&head, &[]).await.map_err(|e| map(OP, e))? {
            Some(row) => (row.get::<_, i64>(0), row.get::<_, String>(1)),
            None => (0, GENESIS_HASH.to_owned()),
        },
    ))
}

/// Chains `records` after `head`.
async fn append_audit(
    conn: &Conn,
    records: &[&(String, AuditRecord)],
    head: Option<(i64, String)>,
) -> Result<(), StoreError> {
    const OP: &str = "audit";
    let Some((mut seq, mut prev)) = head else {
        return Ok(());
    };
    let mut seqs = Vec::with_capacity(records.len());
    let mut hashes = Vec::with_capacity(records.len());
    for (_, record) in records {
        seq += 1;
        prev = chain_hash(&prev, seq as u64, record);
        seqs.push(seq);
        hashes.push(prev.clone());
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.1.execution_id.as_uuid()).collect();
    let texts: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
    let insert = conn.statement(OP, AUDIT_INSERT).await?;
    conn.client()
        .execute(&insert, &[&seqs, &ids, &texts, &hashes])
        .await
        .map_err(|e| map(OP, e))?;
    Ok(())
}

/// Tells the other instances what changed, in the same transaction (so a
/// notification is delivered only if the change committed).
async fn notify(conn: &Conn, done: &[&Op], target: &Target) -> Result<(), StoreError> {
    const OP: &str = "notify";
    if done.is_empty() {
        return Ok(());
    }
    let channel = crate::notify::channel(&target.schema);
    let stmt = conn.statement(OP, NOTIFY).await?;
    let mut payloads = vec![target.instance.clone()];
    for op in done {
        let entry = format!(" {}={}", op.id().simple(), op.change().status.as_str());
        if payloads
            .last()
            .is_some_and(|p| p.len() + entry.len() > MAX_PAYLOAD)
        {
            payloads.push(target.instance.clone());
        }
        if let Some(p) = payloads.last_mut() {
            p.push_str(&entry);
        }
    }
    // All sent at once, so they are all in the pipeline before the COMMIT.
    let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 2]> =
        payloads.iter().map(|p| [&channel as _, p as _]).collect();
    futures_util::future::try_join_all(params.iter().map(|p| conn.client().execute(&stmt, p)))
        .await
        .map_err(|e| map(OP, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::UPDATE_EXECUTIONS;
    use crate::conn::{Conn, Endpoint};

    fn url() -> String {
        std::env::var("GOVERNOR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// The plan of the batch update on `conn` after the table grew from
    /// empty to 20,000 rows without statistics (a new schema).
    async fn update_plan_after_growth(conn: &Conn) -> String {
        let c = conn.client();
        let types = "uuid[], text[], bigint[], bool[], text[], text[], text[], text[], bigint[], \
                     text[], bigint[], bool[], text[], bigint";
        c.batch_execute(&format!(
            "PREPARE batch_update({types}) AS {UPDATE_EXECUTIONS}"
        ))
        .await
        .unwrap();
        let run = "batch_update(ARRAY[gen_random_uuid()], ARRAY['completed'], ARRAY[1]::bigint[], \
                   ARRAY[true], ARRAY[NULL], ARRAY[NULL], ARRAY[NULL], ARRAY[NULL], \
                   ARRAY[NULL]::bigint[], ARRAY[NULL], ARRAY[NULL]::bigint[], ARRAY[false], \
                   ARRAY['running'], 0)";
        // Enough runs on the empty table for PostgreSQL to settle on a
        // generic plan, as the writer's statement does early on.
        for _ in 0..8 {
            c.batch_execute(&format!("EXECUTE {run}")).await.unwrap();
        }
        c.batch_execute(
            "INSERT INTO executions (id, action, status, principal_id, principal, inputs, \
             created_at, updated_at, version) SELECT gen_random_uuid(), 'a', 'running', 'p', '{}', \
             '{}', 0, 0, 0 FROM generate_series(1, 20000)",
        )
        .await
        .unwrap();
        let rows = c
            .query(&format!("EXPLAIN EXECUTE {run}"), &[])
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn batch_updates_find_rows_by_key_after_the_table_grew() {
        let endpoint = Endpoint::new(&url(), &[]).unwrap();
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let setup = Conn::open(&endpoint, "public").await.unwrap();
        crate::schema::migrate(setup.client(), &schema)
            .await
            .unwrap();
        let conn = Conn::open(&endpoint, &schema).await.unwrap();
        let plan = update_plan_after_growth(&conn).await;
        setup
            .client()
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
        assert!(
            plan.contains("Index Scan using executions_pkey") && !plan.contains("Seq Scan"),
            "the update scans the table:\n{plan}"
        );
    }
}
