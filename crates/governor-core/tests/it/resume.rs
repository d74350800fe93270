use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor_core::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Transfer {
    amount: f64,
    recipient: String,
}

fn cfo() -> Principal {
    Principal::new("carol").with_attribute("email", "cfo@company.com")
}

/// Builds the seed's large transfer: parked for the CFO, resumable.
fn large_transfer(g: &Governor, runs: Arc<AtomicUsize>) -> Action {
    g.action("large_wire_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(move |t: Transfer| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, GovernError>(
                    json!({"status": "completed", "amount": t.amount, "to": t.recipient}),
                )
            }
        })
        .build()
        .unwrap()
}

async fn request(action: &Action) -> ExecutionId {
    let err = action
        .run_as(
            Principal::new("agent-7"),
            Args::new()
                .arg("amount", &50_000.0)
                .arg("recipient", "BigCorp"),
            || async { Ok::<_, GovernError>(json!("ran in place")) },
        )
        .await
        .unwrap_err();
    match err {
        GovernError::Pending { execution_id } => execution_id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_approved_execution_resumes_and_the_original_completes() {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let action = large_transfer(&g, Arc::clone(&runs));
    let id = request(&action).await;

    let early = g.resume(id).await.unwrap_err();
    assert!(
        matches!(
            early,
            ResumeError::NotApproved {
                status: ExecutionStatus::AwaitingApproval,
                ..
            }
        ),
        "{early:?}"
    );

    g.approve(id, &cfo(), None).await.unwrap();
    let done = g.resume(id).await.unwrap();
    assert_eq!(
        done.id, id,
        "the original execution completes, not a new one"
    );
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.output.unwrap().value()["to"], "BigCorp");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(matches!(
        g.resume(id).await,
        Err(ResumeError::NotApproved { .. })
    ));
    assert_eq!(
        g.wait_for_result(id, Duration::from_secs(1))
            .await
            .unwrap()
            .status,
        ExecutionStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_resumes_exactly_one_runs() {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let action = large_transfer(&g, Arc::clone(&runs));
    let id = request(&action).await;
    g.approve(id, &cfo(), None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move { g.resume(id).await }));
    }
    let mut completed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(e) => {
                assert_eq!(e.status, ExecutionStatus::Completed);
                completed += 1;
            }
            Err(ResumeError::Conflict { .. } | ResumeError::NotApproved { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(completed >= 1);
    // Give a losing resumer's drop a chance to misbehave, then check.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(
        e.status,
        ExecutionStatus::Completed,
        "a losing resumer must not cancel the winner"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the action ran exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_result_sees_a_resume_made_elsewhere() {
    let g = Governor::builder().build().unwrap();
    let action = large_transfer(&g, Arc::default());
    let id = request(&action).await;
    let waiter = tokio::spawn({
        let g = g.clone();
        async move { g.wait_for_result(id, Duration::from_secs(10)).await }
    });
    g.approve(id, &cfo(), None).await.unwrap();
    g.resume(id).await.unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap().status,
        ExecutionStatus::Completed
    );
}

#[tokio::test]
async fn unknown_actions_and_redacted_arguments_are_refused() {
    let g = Governor::builder().build().unwrap();
    let plain = g
        .action("not_resumable")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .build()
        .unwrap();
    let id = request(&plain).await;
    g.approve(id, &cfo(), None).await.unwrap();
    assert!(matches!(
        g.resume(id).await,
        Err(ResumeError::NotRegistered { .. })
    ));

    let secret = g
        .action("with_secrets")
        .policy(AuditPolicy::new().sensitive_fields(["recipient"]))
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(|t: Transfer| async move { Ok::<_, GovernError>(t.amount) })
        .build()
        .unwrap();
    let id = request(&secret).await;
    g.approve(id, &cfo(), None).await.unwrap();
    assert!(matches!(
        g.resume(id).await,
        Err(ResumeError::RedactedInputs { .. })
    ));
}

#[tokio::test]
async fn a_failing_resumed_action_is_recorded_as_failed() {
    let g = Governor::builder().build().unwrap();
    let action = g
        .action("flaky_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(|_: Value| async { Err::<Value, _>("bank API is down") })
        .build()
        .unwrap();
    let id = request(&action).await;
    g.approve(id, &cfo(), None).await.unwrap();
    let e = g.resume(id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(e.failure.unwrap().message, "bank API is down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_resume_approved_executions_once_each() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let a = Governor::builder()
        .shared_store(Arc::clone(&store))
        .build()
        .unwrap();
    let b = Governor::builder().shared_store(store).build().unwrap();
    let action = large_transfer(&a, Arc::clone(&runs));
    let _same_on_b = large_transfer(&b, Arc::clone(&runs));
    let mut ids = Vec::new();
    for _ in 0..20 {
        let id = request(&action).await;
        a.approve(id, &cfo(), None).await.unwrap();
        ids.push(id);
    }
    let wa = a.spawn_resume_worker("worker-a", Duration::from_millis(5));
    let wb = b.spawn_resume_worker("worker-b", Duration::from_millis(5));
    for id in &ids {
        let e = a
            .wait_for_result(*id, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(e.status, ExecutionStatus::Completed);
    }
    wa.abort();
    wb.abort();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        20,
        "every execution ran exactly once"
    );
}

fn checked_transfer(g: &Governor, paid: Arc<std::sync::Mutex<Vec<f64>>>, wait: Duration) -> Action {
    g.action("checked_transfer")
        .policy(
            ValidationPolicy::new().input_validator(|i: &Value| -> Result<(), String> {
                match i["amount"].as_f64() {
                    Some(a) if a > 0.0 => Ok(()),
                    _ => Err("amount must be positive".into()),
                }
            }),
        )
        .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(wait))
        .resumable(move |t: Transfer| {
            let paid = Arc::clone(&paid);
            async move {
                paid.lock().unwrap().push(t.amount);
                Ok::<_, GovernError>(json!({"sent": t.amount, "to": t.recipient}))
            }
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_approver_can_change_the_arguments_and_the_action_runs_with_them() {
    let g = Governor::builder().build().unwrap();
    let paid = Arc::new(std::sync::Mutex::new(Vec::new()));
    let action = checked_transfer(&g, Arc::clone(&paid), Duration::ZERO);
    let id = request(&action).await;

    let bad = g
        .approve_with_edits(
            id,
            &cfo(),
            json!({"amount": -1.0, "recipient": "BigCorp"}),
            None,
            None,
        )
        .await;
    assert!(
        matches!(bad, Err(ApprovalError::InvalidEdit { .. })),
        "{bad:?}"
    );
    let not_object = g.approve_with_edits(id, &cfo(), json!(5), None, None).await;
    assert!(matches!(not_object, Err(ApprovalError::InvalidEdit { .. })));
    assert_eq!(
        g.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::AwaitingApproval
    );

    let edits = json!({"amount": 9_000.0, "recipient": "BigCorp"});
    g.approve_with_edits(
        id,
        &cfo(),
        edits.clone(),
        Some("capped at the monthly limit"),
        None,
    )
    .await
    .unwrap();
    let done = g.resume(id).await.unwrap();
    assert_eq!(done.output.unwrap().value()["sent"], 9_000.0);
    assert_eq!(*paid.lock().unwrap(), vec![9_000.0]);
    assert_eq!(
        done.inputs.value()["amount"],
        50_000.0,
        "the request is kept as asked"
    );
    let audit = g.store().audit_entries(0, 10).await.unwrap();
    let decision = audit
        .iter()
        .find(|a| a.record.status == ExecutionStatus::Approved)
        .unwrap();
    assert_eq!(
        decision.record.inputs.as_ref().unwrap().value(),
        edits,
        "the audit keeps the edits"
    );
    assert!(
        decision.record.decisions[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("with edits")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_caller_hands_edited_calls_over_to_resume() {
    let g = Governor::builder().build().unwrap();
    let paid = Arc::new(std::sync::Mutex::new(Vec::new()));
    let action = Arc::new(checked_transfer(
        &g,
        Arc::clone(&paid),
        Duration::from_secs(10),
    ));
    let caller = tokio::spawn({
        let action = Arc::clone(&action);
        async move { request(&action).await }
    });
    let id = super::approvals::wait_until_parked(&g).await;
    g.approve_with_edits(
        id,
        &cfo(),
        json!({"amount": 10.0, "recipient": "Acme"}),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(caller.await.unwrap(), id, "the caller got its ticket back");
    assert!(
        paid.lock().unwrap().is_empty(),
        "nothing ran with the old arguments"
    );
    g.resume(id).await.unwrap();
    assert_eq!(*paid.lock().unwrap(), vec![10.0]);
}

#[tokio::test]
async fn edits_need_a_resumable_action() {
    let g = Governor::builder().build().unwrap();
    let plain = g
        .action("plain_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .build()
        .unwrap();
    let id = request(&plain).await;
    let err = g
        .approve_with_edits(id, &cfo(), json!({"amount": 1.0}), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::NotEditable { .. }), "{err:?}");
}

fn slow_transfer(g: &Governor, runs: Arc<AtomicUsize>, takes: Duration) -> Action {
    g.action("slow_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(move |t: Transfer| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(takes).await;
                Ok::<_, GovernError>(t.amount)
            }
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_runner_keeps_its_lease_and_nobody_takes_its_work() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let lease = Duration::from_millis(90);
    let a = Governor::builder()
        .shared_store(Arc::clone(&store))
        .resume_lease(lease)
        .build()
        .unwrap();
    let b = Governor::builder()
        .shared_store(store)
        .resume_lease(lease)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let action = slow_transfer(&a, Arc::clone(&runs), Duration::from_millis(400));
    let _on_b = slow_transfer(&b, Arc::clone(&runs), Duration::from_millis(400));
    let id = request(&action).await;
    a.approve(id, &cfo(), None).await.unwrap();
    let running = tokio::spawn({
        let a = a.clone();
        async move { a.resume(id).await }
    });
    let mut taken = 0;
    for _ in 0..40 {
        taken += b.take_over_abandoned(10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        running.await.unwrap().unwrap().status,
        ExecutionStatus::Completed
    );
    assert_eq!(taken, 0, "the renewed lease kept the work with its runner");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_work_of_a_runner_that_died_is_taken_over_and_completes_once() {
    let g = Governor::builder()
        .resume_lease(Duration::from_secs(30))
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let action = slow_transfer(&g, Arc::clone(&runs), Duration::ZERO);
    let id = request(&action).await;
    g.approve(id, &cfo(), None).await.unwrap();
    // A worker started it and died: `Running`, with a lease nobody renews.
    let mut started = Transition::new(id, ExecutionStatus::Approved, ExecutionStatus::Running);
    started.lease = Some(Lease {
        owner: "dead-worker".into(),
        until: chrono::Utc::now() + chrono::Duration::milliseconds(50),
    });
    g.store().transition(&started).await.unwrap();
    assert_eq!(
        g.resume_approved("worker-2", 10).await.unwrap(),
        0,
        "not before the lease lapses"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(g.resume_approved("worker-2", 10).await.unwrap(), 1);
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert!(e.lease.is_none());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The dead worker, back from the grave, cannot complete it again.
    let mut late = Transition::new(id, ExecutionStatus::Running, ExecutionStatus::Completed);
    late.lease_owner = Some("dead-worker".into());
    assert!(g.store().transition(&late).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_leave_a_call_alone_while_its_caller_waits() {
    let g = Governor::builder().build().unwrap();
    let resumed = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&resumed);
    let action = Arc::new(
        g.action("quick_transfer")
            .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(Duration::from_secs(10)))
            .resumable(move |_: Value| {
                r.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, GovernError>(json!("by a worker")) }
            })
            .build()
            .unwrap(),
    );
    let worker = g.spawn_resume_worker("eager", Duration::from_millis(1));
    let caller = tokio::spawn({
        let action = Arc::clone(&action);
        async move {
            action
                .run(Args::new(), || async {
                    Ok::<_, GovernError>(json!("in place"))
                })
                .await
        }
    });
    let id = super::approvals::wait_until_parked(&g).await;
    g.approve(id, &cfo(), None).await.unwrap();
    assert_eq!(caller.await.unwrap().unwrap(), json!("in place"));
    worker.abort();
    assert_eq!(
        resumed.load(Ordering::SeqCst),
        0,
        "the waiting caller ran it, not the worker"
    );
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert!(e.lease.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_finishes_its_runs_and_holds_no_lease() {
    let g = Governor::builder().build().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let slow = g
        .action("slow_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(move |t: Transfer| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, GovernError>(json!({"amount": t.amount}))
            }
        })
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = request(&slow).await;
        g.approve(id, &cfo(), None).await.unwrap();
        ids.push(id);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = g.spawn_resume_worker_until("worker", Duration::from_millis(5), async move {
        let _ = stopped.await;
    });
    // Stop while the five runs are in flight.
    while started.load(Ordering::SeqCst) < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops")
        .unwrap();
    for id in ids {
        let e = g.execution(id).await.unwrap().unwrap();
        assert_eq!(e.status, ExecutionStatus::Completed, "{id}");
        assert!(e.lease.is_none(), "no lease left on {id}");
    }
    // Nothing approved later is claimed by the stopped worker.
    let id = request(&slow).await;
    g.approve(id, &cfo(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    assert!(e.lease.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claims_only_the_actions_it_can_run() {
    let store = Arc::new(MemoryStore::new());
    let other = Governor::builder()
        .shared_store(store.clone())
        .build()
        .unwrap();
    let g = Governor::builder()
        .shared_store(store.clone())
        .build()
        .unwrap();
    let foreign = other
        .action("only_elsewhere")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(|v: Value| async move { Ok::<_, GovernError>(v) })
        .build()
        .unwrap();
    // Older approved runs of an action this worker does not have...
    for _ in 0..20 {
        let id = request(&foreign).await;
        other.approve(id, &cfo(), None).await.unwrap();
    }
    // ...do not hide the one it does have behind them.
    let runs = Arc::new(AtomicUsize::new(0));
    let mine = request(&large_transfer(&g, Arc::clone(&runs))).await;
    g.approve(mine, &cfo(), None).await.unwrap();
    assert_eq!(g.resume_approved("worker", 5).await.unwrap(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let waiting = store
        .executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::Approved],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(waiting.len(), 20);
    assert!(waiting.iter().all(|e| e.lease.is_none()), "left unclaimed");
}
