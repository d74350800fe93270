//! The store conformance suite: every [`Store`] backend must pass it.
//!
//! A backend crate runs it with [`store_conformance!`](crate::store_conformance),
//! giving an expression that yields a fresh, empty `Arc<dyn Store>` (an
//! `async` block is fine). Each clause of the contract is one test.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::approval::{ApprovalRequest, ApprovalSpec};
use crate::audit::{AuditRecord, verify_chain};
use crate::error::StoreErrorKind;
use crate::event::{EventKind, EventRecord};
use crate::execution::{
    Checkpoint, Execution, ExecutionId, ExecutionStatus, Failure, Snapshot, StatusSet,
};
use crate::json::Json;
use crate::principal::Principal;
use crate::store::{Creation, EventQuery, ExecutionQuery, Store, Transition};

/// Runs every conformance test against the store built by `$make`.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            create_and_read, duplicate_create_is_rejected, transitions_are_conditional,
            state_machine_is_enforced, first_decision_wins, completion_records_everything,
            listing_filters_and_pages, events_filter_and_order, audit_log_is_chained,
            claims_are_exclusive_and_expire, claims_take_the_oldest_first, concurrent_claims_are_disjoint,
            lease_guards_transitions, watch_announces_changes, unicode_and_large_payloads_round_trip,
            creation_can_start_past_pending, versions_make_updates_conditional, grants_are_found_while_valid,
            abandoned_runs_are_taken_over, pauses_are_kept_until_lifted, claims_take_only_the_actions_asked_for,
            concurrent_transitions_each_get_their_own_result, outbox_is_written_with_its_change,
            outbox_claims_are_leased_and_finished_by_their_holder, outbox_concurrent_claims_are_disjoint);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::Store> = $make.await;
                $crate::testing::$name(store).await;
            }
        )*
    };
}

fn execution(action: &str, principal: &str) -> Execution {
    Execution::new(
        action.into(),
        Arc::new(
            Principal::new(principal)
                .with_roles(["r1"])
                .with_tenant("t1"),
        ),
        Json::encode(&json!({"amount": 10, "to": "acme"})).unwrap(),
    )
}

/// An event for a write (which names its execution and action).
fn event(kind: EventKind) -> EventRecord {
    EventRecord::at(Utc::now(), kind, Json::encode(&json!({"k": 1})).unwrap())
}

fn record(e: &Execution, status: ExecutionStatus) -> AuditRecord {
    AuditRecord {
        execution_id: e.id,
        action: Arc::clone(&e.action),
        principal: e.principal.id.as_str().into(),
        tenant: e.principal.tenant.clone(),
        status,
        at: Utc::now(),
        decisions: Arc::default(),
        inputs: Some(e.inputs.clone()),
        output: None,
        failure: None,
        tags: Arc::from(["SOC2".to_owned()]),
        approved_digest: (status == ExecutionStatus::Approved).then(|| "d".repeat(64)),
    }
}

async fn created(store: &Arc<dyn Store>, action: &str, principal: &str) -> Execution {
    let e = execution(action, principal);
    let mut c = Creation::new(e.clone());
    c.events.push(event(EventKind::ExecutionStarted));
    store.create(&c).await.unwrap();
    e
}

async fn parked(store: &Arc<dyn Store>) -> Execution {
    let e = created(store, "pay", "agent").await;
    let mut t = Transition::new(
        e.id,
        ExecutionStatus::Pending,
        ExecutionStatus::AwaitingApproval,
    );
    t.approval = Some(ApprovalRequest::new(vec![ApprovalSpec::new(
        "p",
        vec!["cfo".into()],
    )]));
    store.transition(&t).await.unwrap();
    e
}

async fn approved(store: &Arc<dyn Store>) -> Execution {
    let e = parked(store).await;
    let approve = Transition::new(
        e.id,
        ExecutionStatus::AwaitingApproval,
        ExecutionStatus::Approved,
    );
    store.transition(&approve).await.unwrap();
    e
}

/// Claims up to `limit` approved executions of any action for `owner`.
async fn claim_approved(
    store: &Arc<dyn Store>,
    owner: &str,
    lease: Duration,
    limit: usize,
) -> Vec<Execution> {
    store
        .claim(ExecutionStatus::Approved, owner, lease, limit, None)
        .await
        .unwrap()
}

pub async fn create_and_read(store: Arc<dyn Store>) {
    let e = created(&store, "pay", "alice").await;
    let got = store.execution(e.id).await.unwrap().expect("stored");
    assert_eq!(got.id, e.id);
    assert_eq!(&*got.action, "pay");
    assert_eq!(got.status, ExecutionStatus::Pending);
    assert_eq!(*got.principal, *e.principal);
    assert_eq!(got.inputs.value(), json!({"amount": 10, "to": "acme"}));
    assert_eq!(got.created_at, e.created_at);
    assert!(
        store
            .execution(crate::ExecutionId::new())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn duplicate_create_is_rejected(store: Arc<dyn Store>) {
    let e = created(&store, "pay", "alice").await;
    let err = store.create(&Creation::new(e)).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AlreadyExists);
}

pub async fn transitions_are_conditional(store: Arc<dyn Store>) {
    let e = created(&store, "pay", "alice").await;
    let t = Transition::new(e.id, ExecutionStatus::Pending, ExecutionStatus::Running);
    store.transition(&t).await.unwrap();
    let again = store.transition(&t).await.unwrap_err();
    assert_eq!(again.kind(), StoreErrorKind::Conflict);
    let missing = Transition::new(
        crate::ExecutionId::new(),
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
    );
    assert_eq!(
        store.transition(&missing).await.unwrap_err().kind(),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        store.execution(e.id).await.unwrap().unwrap().status,
        ExecutionStatus::Running
    );
}

pub async fn state_machine_is_enforced(store: Arc<dyn Store>) {
    let e = created(&store, "pay", "alice").await;
    let skip = Transition::new(e.id, StatusSet::active(), ExecutionStatus::Completed);
    assert_eq!(
        store.transition(&skip).await.unwrap_err().kind(),
        StoreErrorKind::Invalid
    );
    let cancel = Transition::new(e.id, StatusSet::active(), ExecutionStatus::Cancelled);
    store.transition(&cancel).await.unwrap();
    let revive = Transition::new(e.id, ExecutionStatus::Cancelled, ExecutionStatus::Running);
    assert_eq!(
        store.transition(&revive).await.unwrap_err().kind(),
        StoreErrorKind::Invalid
    );
}

pub async fn first_decision_wins(store: Arc<dyn Store>) {
    let e = parked(&store).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        let to = if i % 2 == 0 {
            ExecutionStatus::Approved
        } else {
            ExecutionStatus::Rejected
        };
        tasks.push(tokio::spawn(async move {
            store
                .transition(&Transition::new(
                    e.id,
                    ExecutionStatus::AwaitingApproval,
                    to,
                ))
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(err) => assert_eq!(err.kind(), StoreErrorKind::Conflict),
        }
    }
    assert_eq!(wins, 1, "exactly one decision may win");
}

pub async fn completion_records_everything(store: Arc<dyn Store>) {
    let e = created(&store, "pay", "alice").await;
    let mut start = Transition::new(e.id, ExecutionStatus::Pending, ExecutionStatus::Running);
    start.snapshot = Some(Snapshot {
        execution_id: e.id,
        checkpoint: Checkpoint::PreExecution,
        captured_at: Utc::now(),
        state: e.inputs.clone(),
    });
    store.transition(&start).await.unwrap();
    let output = Json::encode(&json!({"status": "sent", "ids": [1, 2]})).unwrap();
    let mut done = Transition::new(e.id, ExecutionStatus::Running, ExecutionStatus::Completed);
    done.output = Some(output.clone());
    done.snapshot = Some(Snapshot {
        execution_id: e.id,
        checkpoint: Checkpoint::PostExecution,
        captured_at: Utc::now(),
        state: output.clone(),
    });
    done.events.push(event(EventKind::ExecutionCompleted));
    done.audit = Some(record(&e, ExecutionStatus::Completed));
    store.transition(&done).await.unwrap();

    let got = store.execution(e.id).await.unwrap().unwrap();
    assert_eq!(got.status, ExecutionStatus::Completed);
    assert_eq!(got.output.unwrap().value(), output.value());
    assert!(got.finished_at.is_some());
    let snaps = store.snapshots(e.id).await.unwrap();
    let points: Vec<_> = snaps.iter().map(|s| s.checkpoint).collect();
    assert_eq!(
        points,
        vec![Checkpoint::PreExecution, Checkpoint::PostExecution]
    );
    let events = store
        .events(&EventQuery {
            execution_id: Some(e.id),
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::ExecutionStarted, EventKind::ExecutionCompleted]
    );
    assert_eq!(&*events[0].action, "pay");

    let e2 = created(&store, "pay", "bob").await;
    let mut fail = Transition::new(e2.id, StatusSet::active(), ExecutionStatus::Failed);
    fail.failure = Some(Failure::new("action", "boom").with_policy("p"));
    store.transition(&fail).await.unwrap();
    let got = store.execution(e2.id).await.unwrap().unwrap();
    assert_eq!(got.failure.unwrap().message, "boom");
}

pub async fn listing_filters_and_pages(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let e = created(
            &store,
            if i % 2 == 0 { "pay" } else { "deploy" },
            if i < 3 { "alice" } else { "bob" },
        )
        .await;
        ids.push(e.id);
    }
    let cancel = Transition::new(ids[6], StatusSet::active(), ExecutionStatus::Cancelled);
    store.transition(&cancel).await.unwrap();

    let all = store.executions(&ExecutionQuery::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );

    let pay = store
        .executions(&ExecutionQuery {
            action: Some("pay".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pay.len(), 4);
    let bob = store
        .executions(&ExecutionQuery {
            principal: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 4);
    let cancelled = store
        .executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::Cancelled],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);

    // Counted by the store, with the same filters, limits ignored.
    let count = |q: ExecutionQuery| {
        let store = Arc::clone(&store);
        async move { store.count_executions(&q).await.unwrap() }
    };
    assert_eq!(count(ExecutionQuery::default()).await, 7);
    assert_eq!(
        count(ExecutionQuery {
            action: Some("pay".into()),
            principal: Some("bob".into()),
            limit: 1,
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(ExecutionQuery {
            statuses: vec![ExecutionStatus::Cancelled, ExecutionStatus::Completed],
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(ExecutionQuery {
            before: Some(ids[3]),
            ..Default::default()
        })
        .await,
        3
    );

    let page1 = store
        .executions(&ExecutionQuery {
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let page2 = store
        .executions(&ExecutionQuery {
            limit: 3,
            before: Some(page1[2].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), 6);
    assert!(page2[0].id < page1[2].id);

    let future = Utc::now() + chrono::Duration::hours(1);
    let none = store
        .executions(&ExecutionQuery {
            since: Some(future),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let before_future = store
        .executions(&ExecutionQuery {
            until: Some(future),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before_future.len(), 7);
}

pub async fn events_filter_and_order(store: Arc<dyn Store>) {
    let a = created(&store, "pay", "alice").await;
    let b = created(&store, "pay", "bob").await;
    let mut t = Transition::new(a.id, ExecutionStatus::Pending, ExecutionStatus::Running);
    t.events = vec![
        event(EventKind::PolicyEvaluated),
        event(EventKind::StateCaptured),
    ];
    store.transition(&t).await.unwrap();
    let all = store.events(&EventQuery::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    // Records name neither: the read events get both from their write.
    assert!(all.iter().all(|e| &*e.action == "pay"), "{all:?}");
    let of_a = all.iter().filter(|e| e.execution_id == a.id).count();
    assert_eq!(of_a, 3, "{all:?}");
    let only_b = store
        .events(&EventQuery {
            execution_id: Some(b.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only_b.len(), 1);
    let kinds = store
        .events(&EventQuery {
            kinds: vec![EventKind::PolicyEvaluated],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(kinds.len(), 1);
    let after = store
        .events(&EventQuery {
            after: Some(all[1].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
    let limited = store
        .events(&EventQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited[0].id, all[0].id);
}

pub async fn audit_log_is_chained(store: Arc<dyn Store>) {
    for i in 0..5 {
        let e = created(&store, "pay", &format!("p{i}")).await;
        let mut t = Transition::new(e.id, StatusSet::active(), ExecutionStatus::Denied);
        let mut r = record(&e, ExecutionStatus::Denied);
        // A logged output that is JSON `null` (a unit result) is kept as
        // such, not read back as "no output" (which would break the hash).
        r.output = (i == 1).then(Json::null);
        t.audit = Some(r);
        store.transition(&t).await.unwrap();
    }
    let entries = store.audit_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[1].record.output, Some(Json::null()));
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(verify_chain(&entries), Ok(5));
    assert_eq!(&*entries[0].record.tags, ["SOC2"]);
    let tail = store.audit_entries(3, 100).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].prev_hash, entries[2].hash);
}

pub async fn claims_are_exclusive_and_expire(store: Arc<dyn Store>) {
    let e = approved(&store).await;
    let first = claim_approved(&store, "w1", Duration::from_millis(300), 10).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].lease.as_ref().unwrap().owner, "w1");
    let second = claim_approved(&store, "w2", Duration::from_secs(30), 10).await;
    assert!(second.is_empty(), "a held lease is not claimable");
    store
        .renew_lease(e.id, "w1", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        store
            .renew_lease(e.id, "w2", Duration::from_secs(1))
            .await
            .unwrap_err()
            .kind(),
        StoreErrorKind::Conflict
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = claim_approved(&store, "w2", Duration::from_secs(30), 10).await;
    assert_eq!(taken.len(), 1, "a lapsed lease is claimable");
    assert_eq!(
        store.release_lease(e.id, "w1").await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    store.release_lease(e.id, "w2").await.unwrap();
    let again = claim_approved(&store, "w3", Duration::from_secs(30), 10).await;
    assert_eq!(again.len(), 1);
}

/// Approved executions are claimed oldest first, so none waits behind
/// newer work for ever.
pub async fn claims_take_the_oldest_first(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(approved(&store).await.id);
    }
    for (worker, expected) in ["w1", "w2", "w3"].into_iter().zip(&ids) {
        let claimed = claim_approved(&store, worker, Duration::from_secs(30), 1).await;
        let claimed: Vec<ExecutionId> = claimed.iter().map(|e| e.id).collect();
        assert_eq!(claimed, vec![*expected], "{worker}");
    }
}

pub async fn concurrent_claims_are_disjoint(store: Arc<dyn Store>) {
    for _ in 0..20 {
        approved(&store).await;
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got =
                    claim_approved(&store, &format!("w{w}"), Duration::from_secs(60), 3).await;
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.into_iter().map(|e| e.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 20, "every execution claimed");
    assert_eq!(all.len(), 20, "no execution claimed twice");
}

pub async fn lease_guards_transitions(store: Arc<dyn Store>) {
    let e = approved(&store).await;
    claim_approved(&store, "w1", Duration::from_secs(60), 1).await;
    let mut stolen = Transition::new(e.id, ExecutionStatus::Approved, ExecutionStatus::Running);
    stolen.lease_owner = Some("w2".into());
    assert_eq!(
        store.transition(&stolen).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    let mut run = Transition::new(e.id, ExecutionStatus::Approved, ExecutionStatus::Running);
    run.lease_owner = Some("w1".into());
    store.transition(&run).await.unwrap();
    let mut done = Transition::new(e.id, ExecutionStatus::Running, ExecutionStatus::Completed);
    done.lease_owner = Some("w1".into());
    store.transition(&done).await.unwrap();
    assert!(
        store
            .execution(e.id)
            .await
            .unwrap()
            .unwrap()
            .lease
            .is_none(),
        "terminal clears the lease"
    );
}

pub async fn watch_announces_changes(store: Arc<dyn Store>) {
    let mut rx = store.watch();
    let e = created(&store, "pay", "alice").await;
    store
        .transition(&Transition::new(
            e.id,
            ExecutionStatus::Pending,
            ExecutionStatus::Running,
        ))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(Ok(change)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        if change.id == e.id {
            seen.push(change.status);
            if change.status == ExecutionStatus::Running {
                break;
            }
        }
    }
    assert!(seen.contains(&ExecutionStatus::Running), "{seen:?}");
}

pub async fn unicode_and_large_payloads_round_trip(store: Arc<dyn Store>) {
    let big: String = "ü€𝄞'\"\\\n".repeat(20_000);
    let e = Execution::new(
        "ünïcode.action".into(),
        Arc::new(Principal::new("名前").with_attribute("quote", "it's \"x\"")),
        Json::encode(&json!({"text": big, "nested": {"list": [null, true, 1.5e300]}})).unwrap(),
    );
    store.create(&Creation::new(e.clone())).await.unwrap();
    let got = store.execution(e.id).await.unwrap().unwrap();
    assert_eq!(got.inputs.value(), e.inputs.value());
    assert_eq!(got.principal, e.principal);
    assert_eq!(&*got.action, "ünïcode.action");
}

pub async fn creation_can_start_past_pending(store: Arc<dyn Store>) {
    let mut e = execution("pay", "alice");
    e.status = ExecutionStatus::Denied;
    e.finished_at = Some(e.created_at);
    e.failure = Some(Failure::new("denied", "no").with_policy("p"));
    let mut c = Creation::new(e.clone());
    c.events.push(event(EventKind::ExecutionStarted));
    c.events.push(event(EventKind::ExecutionDenied));
    c.audit = Some(record(&e, ExecutionStatus::Denied));
    store.create(&c).await.unwrap();
    let got = store.execution(e.id).await.unwrap().unwrap();
    assert_eq!(got.status, ExecutionStatus::Denied);
    assert_eq!(got.failure.unwrap().policy.as_deref(), Some("p"));
    let events = store
        .events(&EventQuery {
            execution_id: Some(e.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(store.audit_entries(0, 10).await.unwrap().len(), 1);

    let mut running = execution("pay", "bob");
    running.status = ExecutionStatus::Running;
    let mut c = Creation::new(running.clone());
    c.snapshot = Some(Snapshot {
        execution_id: running.id,
        checkpoint: Checkpoint::PreExecution,
        captured_at: Utc::now(),
        state: running.inputs.clone(),
    });
    store.create(&c).await.unwrap();
    assert_eq!(store.snapshots(running.id).await.unwrap().len(), 1);
    store
        .transition(&Transition::new(
            running.id,
            ExecutionStatus::Running,
            ExecutionStatus::Completed,
        ))
        .await
        .unwrap();

    let mut done = execution("pay", "carol");
    done.status = ExecutionStatus::Completed;
    assert_eq!(
        store.create(&Creation::new(done)).await.unwrap_err().kind(),
        StoreErrorKind::Invalid
    );
}

pub async fn versions_make_updates_conditional(store: Arc<dyn Store>) {
    let e = parked(&store).await;
    let read = store.execution(e.id).await.unwrap().unwrap();
    assert_eq!(
        read.version, 1,
        "create is version 0, each transition adds one"
    );

    let mut stale = Transition::new(
        e.id,
        ExecutionStatus::AwaitingApproval,
        ExecutionStatus::AwaitingApproval,
    );
    stale.expect_version = Some(0);
    assert_eq!(
        store.transition(&stale).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );

    // Many deciders read the same version; exactly one stage decision lands.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut t = Transition::new(
                e.id,
                ExecutionStatus::AwaitingApproval,
                ExecutionStatus::AwaitingApproval,
            );
            t.expect_version = Some(1);
            store.transition(&t).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(err) => assert_eq!(err.kind(), StoreErrorKind::Conflict),
        }
    }
    assert_eq!(wins, 1);
    let after = store.execution(e.id).await.unwrap().unwrap();
    assert_eq!(
        (after.status, after.version),
        (ExecutionStatus::AwaitingApproval, 2)
    );
}

pub async fn pauses_are_kept_until_lifted(store: Arc<dyn Store>) {
    use crate::pause::{Pause, PauseMode};
    let pause = |action: Option<&str>, mode| Pause {
        action: action.map(str::to_owned),
        mode,
        by: "sre-on-call".into(),
        reason: "incident 42: refunds misfire".into(),
        since: Utc::now(),
    };
    assert!(store.pauses().await.unwrap().is_empty());
    store
        .put_pause(&pause(Some("refund"), PauseMode::Deny))
        .await
        .unwrap();
    store
        .put_pause(&pause(None, PauseMode::Hold))
        .await
        .unwrap();
    // Pausing the same action again replaces its pause.
    let hold = pause(Some("refund"), PauseMode::Hold);
    store.put_pause(&hold).await.unwrap();
    let mut all = store.pauses().await.unwrap();
    all.sort_by(|a, b| a.key().cmp(b.key()));
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].action, None);
    assert_eq!(all[1], hold);
    assert!(store.remove_pause("refund").await.unwrap());
    assert!(
        !store.remove_pause("refund").await.unwrap(),
        "already lifted"
    );
    let left = store.pauses().await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].covers("anything"));
    assert!(store.remove_pause("").await.unwrap());
    assert!(store.pauses().await.unwrap().is_empty());
}

pub async fn grants_are_found_while_valid(store: Arc<dyn Store>) {
    let now = Utc::now();
    let grant = |principal: &str, until| crate::grant::Grant {
        id: uuid::Uuid::now_v7(),
        action: "pay".into(),
        policy: "CfoApproval".into(),
        principal: principal.into(),
        tenant: None,
        policy_version: "v1".into(),
        execution_id: None,
        arguments: Some(Json::encode(&json!({"amount": 5})).unwrap()),
        until,
        granted_by: "carol".into(),
        reason: Some("weekly payroll".into()),
        created_at: now,
    };
    let valid = grant("agent-7", now + chrono::Duration::hours(1));
    store.put_grant(&valid).await.unwrap();
    store
        .put_grant(&grant("agent-7", now - chrono::Duration::seconds(1)))
        .await
        .unwrap();
    store
        .put_grant(&grant("agent-8", now + chrono::Duration::hours(1)))
        .await
        .unwrap();
    let found = store.grants("pay", "agent-7", now).await.unwrap();
    assert_eq!(found, vec![valid.clone()]);
    assert!(
        store
            .grants("refund", "agent-7", now)
            .await
            .unwrap()
            .is_empty()
    );
    let later = store
        .grants("pay", "agent-7", now + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert!(later.is_empty(), "a lapsed grant is not returned");

    // Listed (valid ones, oldest first, bounded) and revoked.
    let all = store.valid_grants(now, 10).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0], valid);
    assert_eq!(
        store.valid_grants(now, 1).await.unwrap(),
        vec![valid.clone()]
    );
    assert_eq!(
        store.remove_grant(valid.id).await.unwrap(),
        Some(valid.clone())
    );
    assert_eq!(store.remove_grant(valid.id).await.unwrap(), None);
    assert!(
        store
            .grants("pay", "agent-7", now)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.valid_grants(now, 10).await.unwrap().len(), 1);
}

pub async fn abandoned_runs_are_taken_over(store: Arc<dyn Store>) {
    use crate::execution::Lease;
    // Run in place by its caller, who held a lease while waiting and
    // dropped it on starting: never taken over.
    let in_place = parked(&store).await;
    let mut decided = Transition::new(
        in_place.id,
        ExecutionStatus::AwaitingApproval,
        ExecutionStatus::Approved,
    );
    decided.lease = Some(Lease {
        owner: "caller".into(),
        until: Utc::now() + chrono::Duration::milliseconds(50),
    });
    store.transition(&decided).await.unwrap();
    let mut start = Transition::new(
        in_place.id,
        ExecutionStatus::Approved,
        ExecutionStatus::Running,
    );
    start.clear_lease = true;
    store.transition(&start).await.unwrap();
    assert!(
        store
            .execution(in_place.id)
            .await
            .unwrap()
            .unwrap()
            .lease
            .is_none(),
        "clear_lease removes it"
    );
    // Resumed by a worker that then died: its lease lapses.
    let e = approved(&store).await;
    let mut run = Transition::new(e.id, ExecutionStatus::Approved, ExecutionStatus::Running);
    run.lease = Some(Lease {
        owner: "dead".into(),
        until: Utc::now() + chrono::Duration::milliseconds(200),
    });
    store.transition(&run).await.unwrap();
    assert_eq!(
        store
            .execution(e.id)
            .await
            .unwrap()
            .unwrap()
            .lease
            .unwrap()
            .owner,
        "dead"
    );
    assert!(
        store
            .claim_abandoned("w2", Duration::from_secs(60), 10, None)
            .await
            .unwrap()
            .is_empty(),
        "lease still held"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = store
        .claim_abandoned("w2", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    assert_eq!(taken.iter().map(|e| e.id).collect::<Vec<_>>(), vec![e.id]);
    assert!(
        store
            .claim_abandoned("w3", Duration::from_secs(60), 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The dead worker's completion is refused; the new owner's lands.
    let mut late = Transition::new(e.id, ExecutionStatus::Running, ExecutionStatus::Completed);
    late.lease_owner = Some("dead".into());
    assert_eq!(
        store.transition(&late).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    let mut done = Transition::new(e.id, ExecutionStatus::Running, ExecutionStatus::Completed);
    done.lease_owner = Some("w2".into());
    store.transition(&done).await.unwrap();
}

pub async fn claims_take_only_the_actions_asked_for(store: Arc<dyn Store>) {
    let mut ids = std::collections::HashMap::new();
    for action in ["a", "b", "c"] {
        let mut c = Creation::new(execution(action, "agent"));
        c.execution.status = ExecutionStatus::Approved;
        ids.insert(action, c.execution.id);
        store.create(&c).await.unwrap();
    }
    let lease = Duration::from_secs(60);
    let none = store
        .claim(ExecutionStatus::Approved, "w1", lease, 10, Some(&[]))
        .await
        .unwrap();
    assert!(none.is_empty(), "an empty list claims nothing");
    let got = store
        .claim(
            ExecutionStatus::Approved,
            "w1",
            lease,
            10,
            Some(&["b", "c", "x"]),
        )
        .await
        .unwrap();
    let mut names: Vec<&str> = got.iter().map(|e| &*e.action).collect();
    names.sort_unstable();
    assert_eq!(names, ["b", "c"]);
    let rest = store
        .claim(ExecutionStatus::Approved, "w2", lease, 10, None)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, ids["a"]);
    // Abandoned runs likewise: lapse the leases of running a and b.
    for (action, owner) in [("a", "w2"), ("b", "w1")] {
        let mut t = Transition::new(
            ids[action],
            ExecutionStatus::Approved,
            ExecutionStatus::Running,
        );
        t.lease_owner = Some(owner.into());
        store.transition(&t).await.unwrap();
        store
            .renew_lease(ids[action], owner, Duration::ZERO)
            .await
            .unwrap();
    }
    let taken = store
        .claim_abandoned("w3", lease, 10, Some(&["b"]))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, ids["b"]);
}

/// Transitions arriving together (which a batching store writes in one
/// go) each get their own result: the ones whose expected status holds
/// are applied, the others are conflicts and change nothing.
pub async fn concurrent_transitions_each_get_their_own_result(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(created(&store, "job", "agent").await.id);
    }
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (store, id) = (Arc::clone(&store), *id);
            tokio::spawn(async move {
                let t = if i % 2 == 0 {
                    Transition::new(id, ExecutionStatus::Pending, ExecutionStatus::Running)
                } else {
                    Transition::new(
                        id,
                        ExecutionStatus::AwaitingApproval,
                        ExecutionStatus::Approved,
                    )
                };
                store.transition(&t).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        let now = store.execution(ids[i]).await.unwrap().unwrap();
        if i % 2 == 0 {
            result.unwrap();
            assert_eq!(now.status, ExecutionStatus::Running);
            assert_eq!(now.version, 1);
        } else {
            assert_eq!(result.unwrap_err().kind(), StoreErrorKind::Conflict);
            assert_eq!(now.status, ExecutionStatus::Pending);
            assert_eq!(now.version, 0);
        }
    }
}

/// For stores that keep event ids unique (the database ones): a creation
/// whose event insert fails leaves nothing behind, because the whole
/// write is one transaction. Not in [`store_conformance!`]: the memory
/// store does not index event ids.
pub async fn failed_writes_leave_nothing_behind(store: Arc<dyn Store>) {
    let first = created(&store, "job", "agent").await;
    let taken = store
        .events(&EventQuery {
            execution_id: Some(first.id),
            ..Default::default()
        })
        .await
        .unwrap();
    // A second execution whose event reuses the first one's event id.
    let second = execution("job", "agent");
    let mut c = Creation::new(second.clone());
    c.events.push(EventRecord::from(&taken[0]));
    let err = store.create(&c).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AlreadyExists, "{err}");
    assert!(store.execution(second.id).await.unwrap().is_none());
    // The store still works afterwards.
    created(&store, "job", "agent").await;
}

pub mod instances;
mod intercept;
mod outbox;

pub use intercept::{InterceptWrites, StoreWrite};
pub use outbox::{
    outbox_claims_are_leased_and_finished_by_their_holder, outbox_concurrent_claims_are_disjoint,
    outbox_is_written_with_its_change,
};
