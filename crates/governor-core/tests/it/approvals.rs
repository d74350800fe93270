use std::sync::Arc;
use std::time::Duration;

use governor_core::store::EventQuery;
use governor_core::*;
use serde_json::json;

fn governor() -> Governor {
    Governor::builder().build().unwrap()
}

fn cfo() -> Principal {
    Principal::new("carol").with_attribute("email", "CFO@company.com")
}

async fn park(g: &Governor, policies: Vec<Arc<dyn Policy>>) -> ExecutionId {
    let action = g
        .action("wire_transfer")
        .policies(policies)
        .build()
        .unwrap();
    let err = action
        .run_as(
            Principal::new("agent-7"),
            Args::new().arg("amount", &50_000),
            || async { Ok::<_, GovernError>(()) },
        )
        .await
        .unwrap_err();
    match err {
        GovernError::Pending { execution_id } => execution_id,
        other => panic!("expected pending, got {other:?}"),
    }
}

fn cfo_policy() -> Arc<dyn Policy> {
    ApprovalPolicy::new(["cfo@company.com"]).boxed()
}

#[tokio::test]
async fn a_listed_approver_approves_and_it_is_recorded() {
    let g = governor();
    let id = park(&g, vec![cfo_policy()]).await;
    let e = g.approve(id, &cfo(), Some("budgeted")).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    let stored = g.execution(id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::Approved);
    let d = &stored.approval.unwrap().stages[0].decisions[0];
    assert_eq!(
        (d.approver.as_str(), d.approved, d.reason.as_deref()),
        ("carol", true, Some("budgeted"))
    );
    let kinds: Vec<_> = g
        .store()
        .events(&EventQuery {
            execution_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::ApprovalGranted), "{kinds:?}");
    let audit = g.store().audit_entries(0, 10).await.unwrap();
    assert_eq!(
        audit.last().unwrap().record.status,
        ExecutionStatus::Approved
    );
    assert_eq!(verify_chain(&audit), Ok(2));
}

#[tokio::test]
async fn a_rejection_carries_its_reason() {
    let g = governor();
    let id = park(&g, vec![cfo_policy()]).await;
    let e = g
        .reject(id, &cfo(), Some("vendor not on the approved list"))
        .await
        .unwrap();
    assert_eq!(e.status, ExecutionStatus::Rejected);
    let stored = g.execution(id).await.unwrap().unwrap();
    let failure = stored.failure.unwrap();
    assert_eq!(failure.kind, "rejected");
    assert!(
        failure.message.contains("vendor not on the approved list"),
        "{}",
        failure.message
    );
    assert!(stored.finished_at.is_some());
}

#[tokio::test]
async fn only_listed_authenticated_approvers_may_decide() {
    let g = governor();
    let id = park(&g, vec![cfo_policy()]).await;
    for who in [
        Principal::new("mallory"),
        Principal::new("anonymous-intern"),
        Principal::anonymous(),
    ] {
        let err = g.approve(id, &who, Some("trust me")).await.unwrap_err();
        assert!(
            matches!(err, ApprovalError::NotAnApprover { stage: 1, .. }),
            "{err:?}"
        );
    }
    assert_eq!(
        g.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::AwaitingApproval
    );
    let by_role = park(&g, vec![ApprovalPolicy::new(["role:treasury"]).boxed()]).await;
    let treasurer = Principal::new("tess").with_roles(["treasury"]);
    assert_eq!(
        g.approve(by_role, &treasurer, None).await.unwrap().status,
        ExecutionStatus::Approved
    );
}

#[tokio::test]
async fn the_requester_may_not_approve_their_own_request_unless_allowed() {
    let g = governor();
    let requester = Principal::new("agent-7");
    let id = park(&g, vec![ApprovalPolicy::new(["agent-7"]).boxed()]).await;
    let err = g.approve(id, &requester, None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::SelfApproval { .. }), "{err:?}");
    let allowed = park(
        &g,
        vec![
            ApprovalPolicy::new(["agent-7"])
                .allow_self_approval(true)
                .boxed(),
        ],
    )
    .await;
    assert_eq!(
        g.approve(allowed, &requester, None).await.unwrap().status,
        ExecutionStatus::Approved
    );
}

#[tokio::test]
async fn require_reason_is_enforced() {
    let g = governor();
    let id = park(
        &g,
        vec![
            ApprovalPolicy::new(["cfo@company.com"])
                .require_reason(true)
                .boxed(),
        ],
    )
    .await;
    for reason in [None, Some("   ")] {
        let err = g.approve(id, &cfo(), reason).await.unwrap_err();
        assert!(
            matches!(err, ApprovalError::ReasonRequired { .. }),
            "{err:?}"
        );
    }
    g.approve(id, &cfo(), Some("fine")).await.unwrap();
}

#[tokio::test]
async fn stages_are_decided_in_order_by_their_own_approvers() {
    let g = governor();
    let id = park(
        &g,
        vec![
            ApprovalPolicy::new(["ai-safety@company.com"])
                .named("Safety")
                .boxed(),
            ApprovalPolicy::new(["security@company.com"])
                .named("Security")
                .boxed(),
        ],
    )
    .await;
    let safety = Principal::new("sam").with_attribute("email", "ai-safety@company.com");
    let security = Principal::new("sec").with_attribute("email", "security@company.com");
    let err = g.approve(id, &security, None).await.unwrap_err();
    assert!(
        matches!(err, ApprovalError::NotAnApprover { stage: 1, .. }),
        "{err:?}"
    );
    let after_one = g.approve(id, &safety, None).await.unwrap();
    assert_eq!(after_one.status, ExecutionStatus::AwaitingApproval);
    let request = after_one.approval.clone().unwrap();
    assert_eq!(request.current_stage().unwrap().0, 1);
    let done = g.approve(id, &security, None).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_fifty_concurrent_decisions_exactly_one_wins() {
    let g = governor();
    let id = park(&g, vec![cfo_policy()]).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            let verdict = if i % 2 == 0 {
                Verdict::Approve
            } else {
                Verdict::Reject
            };
            g.decide(id, &cfo(), verdict, Some("race")).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(ApprovalError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let decisions = g
        .execution(id)
        .await
        .unwrap()
        .unwrap()
        .approval
        .unwrap()
        .stages[0]
        .decisions
        .len();
    assert_eq!(decisions, 1, "exactly one decision is recorded");
}

#[tokio::test]
async fn expired_requests_and_plain_executions_cannot_be_decided() {
    let g = governor();
    let id = park(
        &g,
        vec![
            ApprovalPolicy::new(["cfo@company.com"])
                .expires_in(Some(Duration::ZERO))
                .boxed(),
        ],
    )
    .await;
    let err = g.approve(id, &cfo(), None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Expired { .. }), "{err:?}");

    let plain = g.action("plain").build().unwrap();
    plain
        .run(Args::new(), || async { Ok::<_, GovernError>(json!(1)) })
        .await
        .unwrap();
    let done = g
        .store()
        .executions(&ExecutionQuery {
            action: Some("plain".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = g.approve(done[0].id, &cfo(), None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::NotPending { .. }), "{err:?}");
    let missing = g
        .approve(ExecutionId::new(), &cfo(), None)
        .await
        .unwrap_err();
    assert!(matches!(missing, ApprovalError::NotFound { .. }));
}

pub(crate) async fn wait_until_parked(g: &Governor) -> ExecutionId {
    for _ in 0..500 {
        let parked = g
            .store()
            .executions(&ExecutionQuery {
                statuses: vec![ExecutionStatus::AwaitingApproval],
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(e) = parked.first() {
            return e.id;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("nothing was parked");
}

fn waiting_action(g: &Governor) -> Action {
    g.action("large_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(Duration::from_secs(10)))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_caller_continues_when_approved() {
    let g = governor();
    let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let action = Arc::new(waiting_action(&g));
    let r = Arc::clone(&ran);
    let caller = tokio::spawn({
        let action = Arc::clone(&action);
        async move {
            action
                .run_as(
                    Principal::new("agent-7"),
                    Args::new().arg("amount", &50_000),
                    || async move {
                        r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<_, GovernError>(json!({"status": "completed"}))
                    },
                )
                .await
        }
    });
    let id = wait_until_parked(&g).await;
    g.approve(id, &cfo(), Some("ok")).await.unwrap();
    let out = caller.await.unwrap().unwrap();
    assert_eq!(out["status"], "completed");
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert_eq!(e.approval.unwrap().stages[0].decisions[0].approver, "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_caller_gets_the_rejection_reason() {
    let g = governor();
    let action = Arc::new(waiting_action(&g));
    let caller = tokio::spawn({
        let action = Arc::clone(&action);
        async move {
            action
                .run(Args::new(), || async { Ok::<_, GovernError>(()) })
                .await
        }
    });
    let id = wait_until_parked(&g).await;
    g.reject(id, &cfo(), Some("use the cheaper vendor"))
        .await
        .unwrap();
    let err = caller.await.unwrap().unwrap_err();
    let GovernError::Rejected {
        reason,
        execution_id,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*execution_id, id);
    assert!(reason.contains("use the cheaper vendor"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_as_soon_as_the_request_is_announced_is_not_lost() {
    // The original lost every decision made by a handler of the request
    // (it registered the request only after notifying handlers).
    let g = governor();
    let decider = g.clone();
    g.events()
        .on_async(EventKind::ApprovalRequested, move |event: Arc<Event>| {
            let g = decider.clone();
            async move {
                g.approve(event.execution_id, &cfo(), Some("auto-check passed"))
                    .await
                    .unwrap();
            }
        })
        .unwrap();
    let action = waiting_action(&g);
    let out: i32 = action
        .run(Args::new(), || async { Ok::<_, GovernError>(7) })
        .await
        .unwrap();
    assert_eq!(out, 7);
}

#[tokio::test(start_paused = true)]
async fn when_the_wait_runs_out_the_caller_gets_the_ticket_and_the_request_stays_open() {
    let g = governor();
    let action = g
        .action("slow_approval")
        .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(Duration::from_millis(200)))
        .build()
        .unwrap();
    let err = action
        .run(Args::new(), || async { Ok::<_, GovernError>(()) })
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        g.execution(execution_id).await.unwrap().unwrap().status,
        ExecutionStatus::AwaitingApproval
    );
    assert_eq!(
        g.approve(execution_id, &cfo(), None).await.unwrap().status,
        ExecutionStatus::Approved
    );
}

fn expiring(on_expiry: OnExpiry) -> Arc<dyn Policy> {
    ApprovalPolicy::new(["cfo@company.com"])
        .expires_in(Some(Duration::ZERO))
        .on_expiry(on_expiry)
        .boxed()
}

#[tokio::test]
async fn expiry_rejects_durably_even_with_nobody_waiting() {
    let g = governor();
    let id = park(&g, vec![expiring(OnExpiry::Reject)]).await;
    assert_eq!(g.sweep_expired().await.unwrap(), 1);
    assert_eq!(g.sweep_expired().await.unwrap(), 0, "applied once");
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Expired);
    assert_eq!(e.failure.unwrap().kind, "expired");
    let timeouts = g
        .store()
        .events(&EventQuery {
            execution_id: Some(id),
            kinds: vec![EventKind::ApprovalTimeout],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(timeouts.len(), 1);
    assert!(
        matches!(
            g.approve(id, &cfo(), None).await,
            Err(ApprovalError::Expired { .. })
        ),
        "an expired request says it expired, not that another decision stands"
    );
}

#[tokio::test]
async fn expiry_can_approve_or_escalate() {
    let g = governor();
    let approved = park(&g, vec![expiring(OnExpiry::Approve)]).await;
    let escalated = park(
        &g,
        vec![expiring(OnExpiry::Escalate {
            approvers: vec!["ceo@company.com".into()],
            expires_in: Some(Duration::from_secs(3600)),
        })],
    )
    .await;
    assert_eq!(g.sweep_expired().await.unwrap(), 2);

    let a = g.execution(approved).await.unwrap().unwrap();
    assert_eq!(a.status, ExecutionStatus::Approved);
    assert_eq!(
        a.approval.unwrap().stages[0].decisions[0].approver,
        EXPIRY_APPROVER
    );

    let e = g.execution(escalated).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::AwaitingApproval);
    assert_eq!(
        e.approval.as_ref().unwrap().stages[0].spec.approvers,
        vec!["ceo@company.com"]
    );
    assert!(matches!(
        g.approve(escalated, &cfo(), None).await,
        Err(ApprovalError::NotAnApprover { .. })
    ));
    let ceo = Principal::new("cee").with_attribute("email", "ceo@company.com");
    assert_eq!(
        g.approve(escalated, &ceo, None).await.unwrap().status,
        ExecutionStatus::Approved
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sweeping_one_store_apply_each_expiry_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = Governor::builder()
        .shared_store(Arc::clone(&store))
        .build()
        .unwrap();
    let b = Governor::builder().shared_store(store).build().unwrap();
    for _ in 0..20 {
        park(&a, vec![expiring(OnExpiry::Reject)]).await;
    }
    let (x, y) = tokio::join!(a.sweep_expired(), b.sweep_expired());
    assert_eq!(x.unwrap() + y.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_caller_learns_that_its_request_expired() {
    let g = governor();
    let sweeper = g.spawn_expiry_sweeper(Duration::from_millis(10));
    let action = g
        .action("needs_cfo")
        .policy(
            ApprovalPolicy::new(["cfo@company.com"])
                .wait(Duration::from_secs(10))
                .expires_in(Some(Duration::from_millis(50))),
        )
        .build()
        .unwrap();
    let err = action
        .run(Args::new(), || async { Ok::<_, GovernError>(()) })
        .await
        .unwrap_err();
    sweeper.abort();
    let GovernError::Rejected { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("expired"), "{reason}");
}

fn board() -> Arc<dyn Policy> {
    ApprovalPolicy::new(["ann", "bob", "cy"])
        .quorum(2, true)
        .boxed()
}

#[tokio::test]
async fn a_quorum_needs_distinct_approvers_and_one_rejection_vetoes() {
    let g = governor();
    let (ann, bob, cy) = (
        Principal::new("ann"),
        Principal::new("bob"),
        Principal::new("cy"),
    );

    let id = park(&g, vec![board()]).await;
    assert_eq!(
        g.approve(id, &ann, None).await.unwrap().status,
        ExecutionStatus::AwaitingApproval
    );
    assert!(matches!(
        g.approve(id, &ann, None).await,
        Err(ApprovalError::AlreadyDecided { .. })
    ));
    assert_eq!(
        g.approve(id, &bob, None).await.unwrap().status,
        ExecutionStatus::Approved
    );

    let vetoed = park(&g, vec![board()]).await;
    g.approve(vetoed, &ann, None).await.unwrap();
    let e = g
        .reject(vetoed, &cy, Some("conflict of interest"))
        .await
        .unwrap();
    assert_eq!(e.status, ExecutionStatus::Rejected);
    assert!(e.failure.unwrap().message.contains("conflict of interest"));
}

#[tokio::test]
async fn without_veto_a_rejection_is_recorded_and_the_quorum_can_still_pass() {
    let g = governor();
    let id = park(
        &g,
        vec![
            ApprovalPolicy::new(["ann", "bob", "cy"])
                .quorum(2, false)
                .boxed(),
        ],
    )
    .await;
    let after = g
        .reject(id, &Principal::new("ann"), Some("not convinced"))
        .await
        .unwrap();
    assert_eq!(after.status, ExecutionStatus::AwaitingApproval);
    g.approve(id, &Principal::new("bob"), None).await.unwrap();
    let done = g.approve(id, &Principal::new("cy"), None).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Approved);
    assert_eq!(done.approval.unwrap().stages[0].decisions.len(), 3);
}

#[tokio::test]
async fn a_standing_grant_lets_repeated_calls_pass_for_its_window() {
    let g = governor();
    let action = g
        .action("wire_transfer")
        .policy(cfo_policy())
        .build()
        .unwrap();
    let call = |amount: i64, who: &'static str| {
        action.run_as(
            Principal::new(who),
            Args::new().arg("amount", &amount),
            move || async move { Ok::<_, GovernError>(amount) },
        )
    };
    let first = match call(100, "agent-7").await {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("{other:?}"),
    };
    let (e, grant) = g
        .approve_and_grant(
            first,
            &cfo(),
            Some("payroll run"),
            Duration::from_secs(3600),
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    assert_eq!(grant.granted_by, "carol");

    assert_eq!(
        call(100, "agent-7").await.unwrap(),
        100,
        "same principal, same arguments: passes"
    );
    assert!(
        matches!(call(999, "agent-7").await, Err(GovernError::Pending { .. })),
        "other arguments ask again"
    );
    assert!(
        matches!(call(100, "agent-8").await, Err(GovernError::Pending { .. })),
        "other principals ask again"
    );

    let audit = g.store().audit_entries(0, 100).await.unwrap();
    let passed = audit
        .iter()
        .find(|a| a.record.status == ExecutionStatus::Completed)
        .unwrap();
    let d = &passed.record.decisions[0];
    assert_eq!(d.outcome, "granted");
    assert!(d.reason.as_deref().unwrap().contains("standing grant"));
}

#[tokio::test]
async fn grants_are_checked_like_approvals() {
    let g = governor();
    let id = park(&g, vec![cfo_policy()]).await;
    let err = g
        .approve_and_grant(
            id,
            &Principal::new("mallory"),
            None,
            Duration::from_secs(60),
            false,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::NotAnApprover { .. }));
    assert!(
        g.store()
            .grants("wire_transfer", "agent-7", chrono::Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_caller_reads_the_store_about_once_a_second_whatever_else_happens() {
    use governor_core::testing::InterceptWrites;
    let store = Arc::new(InterceptWrites::new(MemoryStore::new(), |_| None));
    let g = Governor::builder()
        .shared_store(Arc::clone(&store) as Arc<dyn governor_core::store::Store>)
        .build()
        .unwrap();
    let waiting = g
        .action("wire_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(Duration::from_secs(2)))
        .build()
        .unwrap();
    let busy = g.action("lookup").build().unwrap();
    let before = store.execution_reads();
    let caller = tokio::spawn(async move {
        waiting
            .run_as(
                Principal::new("agent-7"),
                Args::new().arg("amount", &1),
                || async { Ok::<_, GovernError>(()) },
            )
            .await
    });
    // Thousands of unrelated changes while it waits (in bursts, as
    // traffic comes); each of them woke it before, besides a 20 ms poll.
    let started = std::time::Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(1800) {
        for _ in 0..25 {
            busy.run(Args::new().arg("n", &calls), || async {
                Ok::<_, GovernError>(())
            })
            .await
            .unwrap();
            calls += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = caller.await.unwrap();
    assert!(
        matches!(outcome, Err(GovernError::Pending { .. })),
        "{outcome:?}"
    );
    let reads = store.execution_reads() - before;
    assert!(calls > 1000, "{calls} unrelated calls");
    // About once a second (3 or 4 reads); the hard bound, should the
    // waiter miss announcements on a loaded machine, is 20 reads a second.
    assert!(
        reads <= 45,
        "a 2 s wait read its execution {reads} times while {calls} other calls ran"
    );
}
