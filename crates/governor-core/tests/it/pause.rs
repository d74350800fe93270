//! The kill switch: pause one action or all, deny or hold new calls, stop
//! resume workers, lift; pausing and lifting are authorized and audited.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor_core::*;
use serde_json::json;

use crate::approvals::wait_until_parked;
use crate::binding::refund_builder;

fn sre() -> Principal {
    Principal::new("sre-on-call").with_permissions([PAUSE_PERMISSION])
}

fn refund(g: &Governor, runs: &Arc<AtomicUsize>) -> Action {
    refund_builder(g, runs).build().unwrap()
}

async fn call(action: &Action, runs: &Arc<AtomicUsize>) -> Result<u32, GovernError> {
    let runs = Arc::clone(runs);
    action
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &30u32),
            || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, GovernError>(30)
            },
        )
        .await
}

#[tokio::test]
async fn only_operators_pause_and_both_pause_and_lift_are_audited() {
    let g = Governor::builder().build().unwrap();
    let err = g
        .pause(
            Some("refund"),
            PauseMode::Deny,
            &Principal::new("agent"),
            "x",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GovernError::Denied { .. }), "{err:?}");
    assert!(g.pauses().await.unwrap().is_empty());

    let pause = g
        .pause(Some("refund"), PauseMode::Deny, &sre(), "incident 42")
        .await
        .unwrap();
    assert_eq!(pause.by, "sre-on-call");
    assert_eq!(g.pauses().await.unwrap(), vec![pause]);
    assert!(g.lift(Some("refund"), &sre(), "fixed").await.unwrap());
    assert!(!g.lift(Some("refund"), &sre(), "again").await.unwrap());

    let audit = g.store().audit_entries(0, 100).await.unwrap();
    let ops: Vec<(&str, ExecutionStatus, &str)> = audit
        .iter()
        .map(|a| (&*a.record.action, a.record.status, &*a.record.principal))
        .collect();
    assert_eq!(
        ops,
        vec![
            (PAUSE_ACTION, ExecutionStatus::Denied, "agent"),
            (PAUSE_ACTION, ExecutionStatus::Completed, "sre-on-call"),
            (LIFT_ACTION, ExecutionStatus::Completed, "sre-on-call"),
            (LIFT_ACTION, ExecutionStatus::Completed, "sre-on-call"),
        ]
    );
    let why = audit[1].record.inputs.as_ref().unwrap().value();
    assert_eq!(why["reason"], "incident 42");
    assert_eq!(why["action"], "refund");
    assert_eq!(verify_chain(&audit), Ok(4));
}

#[tokio::test]
async fn deny_mode_denies_new_calls_of_that_action_until_lifted() {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let action = refund(&g, &runs);
    let other = g.action("lookup").build().unwrap();
    g.pause(Some("refund"), PauseMode::Deny, &sre(), "incident 42")
        .await
        .unwrap();

    let err = call(&action, &runs).await.unwrap_err();
    let GovernError::Paused {
        execution_id,
        by,
        reason,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (by.as_str(), reason.as_str()),
        ("sre-on-call", "incident 42")
    );
    let e = g.execution(execution_id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Denied);
    assert_eq!(e.failure.unwrap().policy.as_deref(), Some("kill switch"));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(call(&other, &runs).await.unwrap(), 30, "other actions run");

    g.lift(Some("refund"), &sre(), "fixed").await.unwrap();
    assert_eq!(call(&action, &runs).await.unwrap(), 30);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn hold_mode_holds_calls_and_workers_run_them_after_the_lift() {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let action = refund(&g, &runs);
    g.pause(None, PauseMode::Hold, &sre(), "freeze everything")
        .await
        .unwrap();

    let err = call(&action, &runs).await.unwrap_err();
    let GovernError::Pending { execution_id: id } = err else {
        panic!("{err:?}")
    };
    let held = g.execution(id).await.unwrap().unwrap();
    assert_eq!(held.status, ExecutionStatus::Approved, "cleared, held");
    let events = g
        .store()
        .events(&EventQuery {
            execution_id: Some(id),
            kinds: vec![EventKind::ExecutionHeld],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);

    assert_eq!(g.resume_approved("worker", 10).await.unwrap(), 0);
    let err = g.resume(id).await.unwrap_err();
    assert!(matches!(err, ResumeError::Paused { .. }), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    g.lift(None, &sre(), "all clear").await.unwrap();
    assert_eq!(g.resume_approved("worker", 10).await.unwrap(), 1);
    let done = g.execution(id).await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.output.unwrap().value(), json!({"refunded": 30}));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn another_instance_on_the_store_honours_the_pause() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = Governor::builder()
        .shared_store(Arc::clone(&store))
        .build()
        .unwrap();
    let b = Governor::builder()
        .shared_store(store)
        .pause_refresh(Duration::ZERO)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let on_b = refund(&b, &runs);
    assert_eq!(call(&on_b, &runs).await.unwrap(), 30, "b read: no pause");
    a.pause(Some("refund"), PauseMode::Deny, &sre(), "from a")
        .await
        .unwrap();
    let err = call(&on_b, &runs).await.unwrap_err();
    assert!(matches!(err, GovernError::Paused { .. }), "{err:?}");
    a.lift(Some("refund"), &sre(), "from a").await.unwrap();
    assert_eq!(call(&on_b, &runs).await.unwrap(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_approved_during_a_pause_is_held_not_run() {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let action = refund_builder(&g, &runs)
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::from_secs(10)))
        .build()
        .unwrap();
    let waiting = tokio::spawn({
        let runs = Arc::clone(&runs);
        async move { call(&action, &runs).await }
    });
    let id = wait_until_parked(&g).await;
    g.pause(Some("refund"), PauseMode::Deny, &sre(), "incident")
        .await
        .unwrap();
    g.approve(id, &Principal::new("cfo"), None).await.unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, GovernError::Pending { .. }), "{err:?}");
    assert_eq!(
        g.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::Approved,
        "the approval is kept"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    g.lift(Some("refund"), &sre(), "ok").await.unwrap();
    assert_eq!(
        g.resume(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
