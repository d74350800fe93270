//! The writer task: creations and transitions that arrive together share
//! one MongoDB transaction (group commit), with one `insertMany` per kind
//! of new document in the batch.
//!
//! Transactions that touch the same document (two instances chaining
//! audit records onto the one head) conflict; the loser is retried
//! whole, as the server's `TransientTransactionError` label invites. Any
//! other error aborts the batch, and each of its writes is then tried
//! alone: one bad write fails only itself.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use governor_core::{
    AuditRecord, Change, Creation, EventRecord, ExecutionId, ExecutionStatus, GENESIS_HASH,
    Snapshot, StatusSet, StoreError, StoreErrorKind, Transition, chain_hash,
};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT;
use mongodb::{Client, ClientSession, Database};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::codec::{Fields, encode_json, event_doc, execution_doc, id_text, to_nanos};
use crate::error::{is_transient, map};

/// Most writes committed together.
const MAX_BATCH: usize = 256;
/// Attempts at a batch whose transaction keeps conflicting.
const MAX_ATTEMPTS: u32 = 64;

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
    doc: Document,
    change: Change,
    extras: Extras,
}

pub(crate) struct Update {
    /// The transition without its events, snapshot and audit record.
    t: Transition,
    /// The fields it sets.
    set: Document,
    extras: Extras,
}

/// What is written alongside an execution.
pub(crate) struct Extras {
    snapshot: Option<Document>,
    events: Vec<Document>,
    audit: Option<(String, AuditRecord)>,
    notifications: Vec<Document>,
}

fn extras(
    op: &'static str,
    id: ExecutionId,
    snapshot: Option<&Snapshot>,
    events: &[EventRecord],
    audit: Option<&AuditRecord>,
    notifications: &[governor_core::Notification],
) -> Result<Extras, StoreError> {
    Ok(Extras {
        notifications: notifications
            .iter()
            .map(|n| crate::outbox::doc_of(op, n))
            .collect::<Result<_, _>>()?,
        snapshot: snapshot.map(|s| {
            doc! {
                "execution_id": id_text(s.execution_id.as_uuid()),
                "captured_at": to_nanos(s.captured_at),
                "checkpoint": s.checkpoint.as_str(),
                "state": s.state.as_str(),
            }
        }),
        events: events.iter().map(|e| event_doc(id, e)).collect(),
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
        doc: execution_doc(OP, e)?,
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
    let terminal = t.to.is_terminal();
    let mut set = doc! { "status": t.to.as_str(), "updated_at": to_nanos(t.at) };
    if terminal {
        set.insert("finished_at", to_nanos(t.at));
    }
    if let Some(o) = &t.output {
        set.insert("output", o.as_str());
    }
    if let Some(f) = &t.failure {
        set.insert("failure", encode_json(OP, f)?);
    }
    if let Some(a) = &t.approval {
        set.insert("approval", encode_json(OP, a)?);
    }
    match (&t.lease, terminal) {
        (Some(l), false) => {
            set.insert("lease_owner", l.owner.as_str());
            set.insert("lease_until", to_nanos(l.until));
        }
        _ if terminal || t.clear_lease => {
            set.insert("lease_owner", Bson::Null);
            set.insert("lease_until", Bson::Null);
        }
        _ => {}
    }
    let mut bare = t.clone();
    bare.events.clear();
    bare.snapshot = None;
    bare.audit = None;
    Ok(Op::Transition(Box::new(Update {
        t: bare,
        set,
        extras,
    })))
}

/// Starts the writer task.
pub(crate) fn spawn(
    client: Client,
    db: Database,
    changes: broadcast::Sender<Change>,
) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            run_batch(&client, &db, batch, &changes).await;
        }
    });
    tx
}

fn fail_all(batch: Vec<Job>, err: &StoreError) {
    for job in batch {
        let _ = job.reply.send(Err(err.without_source()));
    }
}

async fn run_batch(
    client: &Client,
    db: &Database,
    batch: Vec<Job>,
    changes: &broadcast::Sender<Change>,
) {
    let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
    match commit(client, db, &ops).await {
        Ok(results) => finish(batch, results, changes),
        Err(e) if batch.len() == 1 => fail_all(batch, &e),
        Err(e) => {
            tracing::debug!(error = %e, writes = batch.len(), "batch failed; writing one by one");
            for job in batch {
                match commit(client, db, &[&job.op]).await {
                    Ok(results) => finish(vec![job], results, changes),
                    Err(e) => fail_all(vec![job], &e),
                }
            }
        }
    }
}

fn finish(
    batch: Vec<Job>,
    results: Vec<Result<(), StoreError>>,
    changes: &broadcast::Sender<Change>,
) {
    let mut announced = Vec::new();
    for (job, result) in batch.into_iter().zip(results) {
        if result.is_ok() {
            announced.push(job.op.change());
        }
        let _ = job.reply.send(result);
    }
    if changes.receiver_count() > 0 {
        for c in announced {
            let _ = changes.send(c);
        }
    }
}

type Results = Vec<Result<(), StoreError>>;
/// A driver error and the step that raised it.
type Failed = (&'static str, mongodb::error::Error);

/// Writes `ops` in one transaction, retrying it while it conflicts; the
/// outer error means nothing was committed, the inner results say which
/// writes took effect.
async fn commit(client: &Client, db: &Database, ops: &[&Op]) -> Result<Results, StoreError> {
    let mut session = client.start_session().await.map_err(|e| map("begin", e))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = attempt_once(&mut session, db, ops).await;
        match outcome {
            Ok(results) => return Ok(results),
            Err((_, e)) if is_transient(&e) && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err((op, e)) => return Err(map(op, e)),
        }
    }
}

async fn attempt_once(
    session: &mut ClientSession,
    db: &Database,
    ops: &[&Op],
) -> Result<Results, Failed> {
    session
        .start_transaction()
        .await
        .map_err(|e| ("begin", e))?;
    let results = match write(session, db, ops).await {
        Ok(results) => results,
        Err(failed) => {
            let _ = session.abort_transaction().await;
            return Err(failed);
        }
    };
    // An unknown commit result may be retried: committing is idempotent.
    let mut tries = 0;
    loop {
        tries += 1;
        match session.commit_transaction().await {
            Ok(()) => return Ok(results),
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && tries < 3 => {}
            Err(e) => return Err(("commit", e)),
        }
    }
}

/// A short, growing, jittered pause between conflicting attempts.
fn backoff(attempt: u32) -> Duration {
    let cap_us = 200u64 << attempt.min(8);
    let jitter = u64::from(Utc::now().timestamp_subsec_nanos()) % cap_us;
    Duration::from_micros(jitter + 100)
}

async fn write(session: &mut ClientSession, db: &Database, ops: &[&Op]) -> Result<Results, Failed> {
    let mut results: Vec<Option<Result<(), StoreError>>> = (0..ops.len()).map(|_| None).collect();
    insert_executions(session, db, ops, &mut results).await?;
    update_executions(session, db, ops, &mut results).await?;
    let done: Vec<&Op> = ops
        .iter()
        .zip(&results)
        .filter(|(_, r)| matches!(r, Some(Ok(()))))
        .map(|(op, _)| *op)
        .collect();
    insert_extras(session, db, &done).await?;
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

async fn insert_executions(
    session: &mut ClientSession,
    db: &Database,
    ops: &[&Op],
    results: &mut [Option<Result<(), StoreError>>],
) -> Result<(), Failed> {
    let mut docs = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Create(c) = op {
            docs.push(&c.doc);
            results[i] = Some(Ok(()));
        }
    }
    if docs.is_empty() {
        return Ok(());
    }
    // A taken id fails the whole insert (and the transaction); the batch
    // is then retried write by write, and only that creation fails.
    db.collection::<Document>("executions")
        .insert_many(docs)
        .session(&mut *session)
        .await
        .map_err(|e| ("create", e))?;
    Ok(())
}

async fn update_executions(
    session: &mut ClientSession,
    db: &Database,
    ops: &[&Op],
    results: &mut [Option<Result<(), StoreError>>],
) -> Result<(), Failed> {
    let mut pending: Vec<(usize, &Update)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Transition(u) => Some((i, &**u)),
            Op::Create(_) => None,
        })
        .collect();
    // Two transitions of one execution in a batch go in successive
    // rounds, in the order they came.
    while !pending.is_empty() {
        let mut seen = HashSet::new();
        let (round, later): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, u)| seen.insert(u.t.id));
        if let [(i, u)] = round[..] {
            results[i] = Some(update_one(session, db, u).await?);
        } else {
            update_many(session, db, &round, results).await?;
        }
        pending = later;
    }
    Ok(())
}

fn update_doc(u: &Update, batch: Option<&str>) -> Document {
    let mut set = u.set.clone();
    if let Some(b) = batch {
        set.insert("batch", b);
    }
    doc! { "$set": set, "$inc": { "version": 1 } }
}

async fn update_one(
    session: &mut ClientSession,
    db: &Database,
    u: &Update,
) -> Result<Result<(), StoreError>, Failed> {
    const OP: &str = "transition";
    let updated = db
        .collection::<Document>("executions")
        .update_one(filter(&u.t, to_nanos(Utc::now())), update_doc(u, None))
        .session(&mut *session)
        .await
        .map_err(|e| (OP, e))?;
    if updated.matched_count == 1 {
        Ok(Ok(()))
    } else {
        why_not(session, db, u).await
    }
}

/// Applies several transitions (of distinct executions) with one `update`
/// command; each marks what it changed with this round's token, so one
/// read tells which matched.
async fn update_many(
    session: &mut ClientSession,
    db: &Database,
    round: &[(usize, &Update)],
    results: &mut [Option<Result<(), StoreError>>],
) -> Result<(), Failed> {
    const OP: &str = "transition";
    let now = to_nanos(Utc::now());
    let token = uuid::Uuid::now_v7().simple().to_string();
    let updates: Vec<Document> = round
        .iter()
        .map(|(_, u)| doc! { "q": filter(&u.t, now), "u": update_doc(u, Some(&token)) })
        .collect();
    let reply = db
        .run_command(doc! { "update": "executions", "updates": updates, "ordered": true })
        .session(&mut *session)
        .await
        .map_err(|e| (OP, e))?;
    if reply.get_array("writeErrors").is_ok_and(|e| !e.is_empty()) {
        // The server has aborted the transaction; the batch is retried
        // write by write, where the error is reported to its caller.
        let e = mongodb::error::Error::custom(format!("update failed: {reply}"));
        return Err((OP, e));
    }
    let ids: Vec<String> = round
        .iter()
        .map(|(_, u)| id_text(u.t.id.as_uuid()))
        .collect();
    let executions = db.collection::<Document>("executions");
    let mut cursor = executions
        .find(doc! { "_id": { "$in": ids }, "batch": &token })
        .projection(doc! { "_id": 1 })
        .session(&mut *session)
        .await
        .map_err(|e| (OP, e))?;
    let mut matched = HashSet::new();
    while let Some(d) = cursor.next(&mut *session).await {
        if let Ok(id) = d.map_err(|e| (OP, e))?.get_str("_id") {
            matched.insert(id.to_owned());
        }
    }
    for (i, u) in round {
        results[*i] = Some(if matched.contains(&id_text(u.t.id.as_uuid())) {
            Ok(())
        } else {
            why_not(session, db, u).await?
        });
    }
    Ok(())
}

/// Why `u` matched no document.
async fn why_not(
    session: &mut ClientSession,
    db: &Database,
    u: &Update,
) -> Result<Result<(), StoreError>, Failed> {
    let current = db
        .collection::<Document>("executions")
        .find_one(doc! { "_id": id_text(u.t.id.as_uuid()) })
        .session(&mut *session)
        .await
        .map_err(|e| ("transition", e))?;
    Ok(explain(&u.t, current.as_ref()))
}

/// The documents `t` may change: in an expected status the state machine
/// lets become `to`, with the lease and version it asks for.
fn filter(t: &Transition, now: i64) -> Document {
    let from: Vec<&str> = t
        .from
        .iter()
        .filter(|s| s.can_become(t.to))
        .fold(StatusSet::EMPTY, StatusSet::with)
        .iter()
        .map(ExecutionStatus::as_str)
        .collect();
    let mut f = doc! { "_id": id_text(t.id.as_uuid()), "status": { "$in": from } };
    if let Some(owner) = &t.lease_owner {
        f.insert("lease_owner", owner.as_str());
        f.insert("lease_until", doc! { "$gt": now });
    }
    if let Some(v) = t.expect_version {
        f.insert("version", i64::try_from(v).unwrap_or(i64::MAX));
    }
    f
}

/// Why a transition matched no document.
fn explain(t: &Transition, current: Option<&Document>) -> Result<(), StoreError> {
    let Some(doc) = current else {
        return Err(t.explain_miss(None));
    };
    let f = Fields::new("transition", doc);
    let version = u64::try_from(f.int("version")?).unwrap_or(0);
    Err(t.explain_miss(Some((f.status()?, f.lease()?.as_ref(), version))))
}

async fn insert_extras(
    session: &mut ClientSession,
    db: &Database,
    done: &[&Op],
) -> Result<(), Failed> {
    let snapshots: Vec<&Document> = done
        .iter()
        .filter_map(|op| op.extras().snapshot.as_ref())
        .collect();
    if !snapshots.is_empty() {
        db.collection::<Document>("snapshots")
            .insert_many(snapshots)
            .session(&mut *session)
            .await
            .map_err(|e| ("snapshot", e))?;
    }
    let events: Vec<&Document> = done.iter().flat_map(|op| &op.extras().events).collect();
    if !events.is_empty() {
        db.collection::<Document>("events")
            .insert_many(events)
            .session(&mut *session)
            .await
            .map_err(|e| ("events", e))?;
    }
    let outbox: Vec<&Document> = done
        .iter()
        .flat_map(|op| &op.extras().notifications)
        .collect();
    if !outbox.is_empty() {
        db.collection::<Document>("outbox")
            .insert_many(outbox)
            .session(&mut *session)
            .await
            .map_err(|e| ("outbox", e))?;
    }
    let audit: Vec<&(String, AuditRecord)> = done
        .iter()
        .filter_map(|op| op.extras().audit.as_ref())
        .collect();
    if !audit.is_empty() {
        append_audit(session, db, &audit).await?;
    }
    Ok(())
}

/// Chains audit records onto the log. The chain has one head, a document
/// every appending transaction updates, so appends from different
/// instances conflict and take turns (once per batch, not per record).
async fn append_audit(
    session: &mut ClientSession,
    db: &Database,
    records: &[&(String, AuditRecord)],
) -> Result<(), Failed> {
    const OP: &str = "audit";
    let meta = db.collection::<Document>("meta");
    let head = meta
        .find_one(doc! { "_id": "audit_head" })
        .session(&mut *session)
        .await
        .map_err(|e| (OP, e))?;
    let (mut seq, mut prev) = head
        .as_ref()
        .and_then(|h| Some((h.get_i64("seq").ok()?, h.get_str("hash").ok()?.to_owned())))
        .unwrap_or((0, GENESIS_HASH.to_owned()));
    let mut entries = Vec::with_capacity(records.len());
    for (text, record) in records {
        seq += 1;
        prev = chain_hash(&prev, seq as u64, record);
        entries.push(doc! {
            "_id": seq,
            "execution_id": id_text(record.execution_id.as_uuid()),
            "record": text.as_str(),
            "hash": prev.as_str(),
        });
    }
    db.collection::<Document>("audit")
        .insert_many(entries)
        .session(&mut *session)
        .await
        .map_err(|e| (OP, e))?;
    meta.update_one(
        doc! { "_id": "audit_head" },
        doc! { "$set": { "seq": seq, "hash": prev } },
    )
    .upsert(true)
    .session(&mut *session)
    .await
    .map_err(|e| (OP, e))?;
    Ok(())
}
