//! An approval means exactly what every approver saw: edits, quorums,
//! stages and standing grants.

use std::sync::Arc;
use std::time::Duration;

use governor_core::config::Format;
use governor_core::store::EventQuery;
use governor_core::*;
use serde_json::{Value, json};

#[derive(serde::Deserialize)]
struct Transfer {
    amount: f64,
}

/// An action `pay` under `file`'s policies, resumable, paying into `paid`.
fn pay(g: &Governor, file: &PolicyFile, paid: Arc<std::sync::Mutex<Vec<f64>>>) -> Action {
    g.action("pay")
        .policies(file.policies_for("pay"))
        .resumable(move |t: Transfer| {
            let paid = Arc::clone(&paid);
            async move {
                paid.lock().unwrap().push(t.amount);
                Ok::<_, GovernError>(json!({"sent": t.amount}))
            }
        })
        .build()
        .unwrap()
}

async fn ask(action: &Action, amount: f64) -> ExecutionId {
    match action
        .run_as(
            Principal::new("agent-1"),
            Args::new().arg("amount", &amount),
            || async { Ok::<_, GovernError>(json!("ran in place")) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected pending, got {other:?}"),
    }
}

fn file(yaml: &str) -> PolicyFile {
    PolicyFile::parse(yaml, Format::Yaml).unwrap()
}

fn who(id: &str) -> Principal {
    Principal::new(id)
}

async fn status(g: &Governor, id: ExecutionId) -> ExecutionStatus {
    g.execution(id).await.unwrap().unwrap().status
}

const TWO_STAGES: &str = r#"
policies:
  - type: approval
    name: Transfer
    actions: [pay]
    stages:
      - name: risk
        approvers: [rita]
      - name: finance
        approvers: [alice, bob]
        quorum: 2
"#;

#[tokio::test]
async fn edits_reset_quorum_and_earlier_stages() {
    let g = Governor::builder().build().unwrap();
    let paid = Arc::new(std::sync::Mutex::new(Vec::new()));
    let action = pay(&g, &file(TWO_STAGES), Arc::clone(&paid));
    let id = ask(&action, 100.0).await;

    g.approve(id, &who("rita"), None).await.unwrap();
    g.approve(id, &who("alice"), None).await.unwrap();
    // Bob's edit would complete the quorum with Alice's approval of 100.
    let e = g
        .approve_with_edits(id, &who("bob"), json!({"amount": 1_000_000.0}), None, None)
        .await
        .unwrap();
    assert_eq!(
        e.status,
        ExecutionStatus::AwaitingApproval,
        "Alice approved 100, not 1,000,000: the quorum is not met"
    );
    let request = e.approval.as_ref().unwrap();
    let (stage, _) = request.current_stage().unwrap();
    assert_eq!(stage, 0, "the earlier stage asks again");
    assert!(request.stages[0].decisions[0].superseded);
    assert_eq!(request.stages[1].approvals(), 1, "only Bob's counts");
    // The run is refused until every approval is for what will run.
    assert!(g.resume(id).await.is_err());
    assert!(paid.lock().unwrap().is_empty());

    g.approve(id, &who("rita"), Some("seen the new amount"))
        .await
        .unwrap();
    let e = g
        .approve(id, &who("alice"), Some("seen the new amount"))
        .await
        .unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    let done = g.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(*paid.lock().unwrap(), vec![1_000_000.0]);
}

#[tokio::test]
async fn an_edit_that_alone_completes_the_last_stage_keeps_earlier_approvals() {
    let g = Governor::builder().build().unwrap();
    let paid = Arc::new(std::sync::Mutex::new(Vec::new()));
    let policies = file(
        r#"
policies:
  - type: approval
    name: Transfer
    actions: [pay]
    stages:
      - {name: risk, approvers: [rita]}
      - {name: finance, approvers: [alice]}
"#,
    );
    let action = pay(&g, &policies, Arc::clone(&paid));
    let id = ask(&action, 100.0).await;
    g.approve(id, &who("rita"), None).await.unwrap();
    let e = g
        .approve_with_edits(id, &who("alice"), json!({"amount": 90.0}), None, None)
        .await
        .unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    g.resume(id).await.unwrap();
    assert_eq!(*paid.lock().unwrap(), vec![90.0]);
}

#[tokio::test]
async fn a_decision_on_what_was_not_seen_is_refused() {
    let g = Governor::builder().build().unwrap();
    let action = pay(&g, &file(TWO_STAGES), Arc::default());
    let id = ask(&action, 100.0).await;
    let seen = g
        .execution(id)
        .await
        .unwrap()
        .unwrap()
        .approval
        .unwrap()
        .digest
        .unwrap();
    g.approve(id, &who("rita"), None).await.unwrap();
    g.approve_with_edits(
        id,
        &who("bob"),
        json!({"amount": 5_000.0}),
        None,
        Some(&seen),
    )
    .await
    .unwrap();
    // Rita looked before Bob's edit: her approval is for 100.
    let stale = g
        .decide_as_seen(id, &who("rita"), Verdict::Approve, None, Some(&seen))
        .await
        .unwrap_err();
    assert!(matches!(stale, ApprovalError::Changed { .. }), "{stale}");
    let now = g
        .execution(id)
        .await
        .unwrap()
        .unwrap()
        .approval
        .unwrap()
        .digest
        .unwrap();
    assert_ne!(now, seen);
    g.decide_as_seen(id, &who("rita"), Verdict::Approve, None, Some(&now))
        .await
        .unwrap();
}

#[tokio::test]
async fn one_person_does_not_pass_two_stages_through_a_role() {
    let g = Governor::builder().build().unwrap();
    let policies = r#"
policies:
  - type: approval
    name: Transfer
    actions: [pay]
    stages:
      - {name: first, approvers: ["role:finance"]}
      - {name: second, approvers: ["role:finance"]ALLOW}
"#;
    let finance = |id: &str| who(id).with_roles(["finance"]);
    let action = pay(&g, &file(&policies.replace("ALLOW", "")), Arc::default());
    let id = ask(&action, 100.0).await;
    g.approve(id, &finance("fran"), None).await.unwrap();
    let err = g.approve(id, &finance("fran"), None).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApprovalError::SameApproverAcrossStages { stage: 2, .. }
        ),
        "{err}"
    );
    let e = g.approve(id, &finance("fred"), None).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);

    // The policy may allow it, explicitly.
    let g = Governor::builder().build().unwrap();
    let allowed = policies.replace("ALLOW", ", allow_same_approver_across_stages: true");
    let action = pay(&g, &file(&allowed), Arc::default());
    let id = ask(&action, 100.0).await;
    g.approve(id, &finance("fran"), None).await.unwrap();
    let e = g.approve(id, &finance("fran"), None).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
}

#[tokio::test]
async fn edits_pass_every_pre_execution_policy_and_newly_applying_stages() {
    let g = Governor::builder().build().unwrap();
    let policies = file(
        r#"
policies:
  - type: approval
    name: Manager
    actions: [pay]
    approvers: [alice]
  - type: approval
    name: Board
    actions: [pay]
    approvers: [bob]
    when: input.amount > 10000
  - type: authorization
    name: Cap
    actions: [pay]
    required_roles: [treasurer]
    when: input.amount > 50000
"#,
    );
    let action = pay(&g, &policies, Arc::default());
    let id = ask(&action, 100.0).await;
    let over_cap = g
        .approve_with_edits(id, &who("alice"), json!({"amount": 60_000.0}), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&over_cap, ApprovalError::InvalidEdit { reason, .. } if reason.contains("Cap")),
        "{over_cap}"
    );
    assert_eq!(status(&g, id).await, ExecutionStatus::AwaitingApproval);

    let e = g
        .approve_with_edits(id, &who("alice"), json!({"amount": 20_000.0}), None, None)
        .await
        .unwrap();
    assert_eq!(
        e.status,
        ExecutionStatus::AwaitingApproval,
        "the board's stage applies to the edited amount"
    );
    let request = e.approval.unwrap();
    assert_eq!(request.stages.len(), 2);
    assert_eq!(request.stages[1].spec.policy, "Board");
    let e = g.approve(id, &who("bob"), None).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    assert_eq!(
        g.resume(id).await.unwrap().output.unwrap().value()["sent"],
        20_000.0
    );
}

#[tokio::test]
async fn a_custom_policy_judges_the_edits() {
    let g = Governor::builder().build().unwrap();
    let action = g
        .action("pay")
        .policy(policy_fn("cap", |ctx| {
            if ctx.input["amount"].as_f64().unwrap_or(0.0) > 1_000.0 {
                Decision::deny("over the cap")
            } else {
                Decision::Allow
            }
        }))
        .policy(ApprovalPolicy::new(["alice"]))
        .resumable(|t: Transfer| async move { Ok::<_, GovernError>(t.amount) })
        .build()
        .unwrap();
    let id = ask(&action, 100.0).await;
    let err = g
        .approve_with_edits(id, &who("alice"), json!({"amount": 5_000.0}), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the cap"), "{err}");
}

const GRANTED: &str = r#"
policies:
  - type: approval
    name: Cfo
    actions: [pay]
    approvers: [carol, dave]
    quorum: QUORUM
"#;

#[tokio::test]
async fn grants_come_only_from_a_decision_that_completes_a_stage_alone() {
    let g = Governor::builder().build().unwrap();
    let action = pay(&g, &file(&GRANTED.replace("QUORUM", "2")), Arc::default());
    let id = ask(&action, 100.0).await;
    let hour = Duration::from_secs(3600);
    let err = g
        .approve_and_grant(id, &who("carol"), None, hour, true, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::GrantRefused { .. }), "{err}");
    g.approve(id, &who("carol"), None).await.unwrap();
    let err = g
        .approve_and_grant(id, &who("dave"), None, hour, true, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::GrantRefused { .. }), "{err}");
    assert_eq!(status(&g, id).await, ExecutionStatus::AwaitingApproval);
}

#[tokio::test]
async fn grants_are_bounded_by_default_and_announced() {
    let g = Governor::builder().build().unwrap();
    let action = pay(&g, &file(&GRANTED.replace("QUORUM", "1")), Arc::default());
    let id = ask(&action, 100.0).await;
    let day = Duration::from_secs(24 * 3600);
    let long = g
        .approve_and_grant(id, &who("carol"), None, day * 2, true, None)
        .await
        .unwrap_err();
    assert!(long.to_string().contains("at most 86400s"), "{long}");
    let any = g
        .approve_and_grant(id, &who("carol"), None, day, false, None)
        .await
        .unwrap_err();
    assert!(any.to_string().contains("same arguments"), "{any}");
    let (_, grant) = g
        .approve_and_grant(id, &who("carol"), Some("payroll"), day, true, None)
        .await
        .unwrap();
    assert_eq!(grant.policy_version, action.policy_version());
    assert_eq!(grant.execution_id, Some(id));

    let audit = g.store().audit_entries(0, 100).await.unwrap();
    let decision = audit
        .iter()
        .find(|a| a.record.status == ExecutionStatus::Approved)
        .unwrap();
    let created = decision
        .record
        .decisions
        .iter()
        .find(|d| d.outcome == "grant_created")
        .expect("the decision's audit record names the grant");
    assert!(
        created
            .reason
            .as_deref()
            .unwrap()
            .contains(&grant.id.to_string())
    );
    let events = g
        .store()
        .events(&EventQuery {
            execution_id: Some(id),
            kinds: vec![EventKind::GrantCreated],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.value()["grant"]["id"], json!(grant.id));

    // The same call passes; another tenant's principal of the same id
    // does not.
    let same = action
        .run_as(
            who("agent-1"),
            Args::new().arg("amount", &100.0),
            || async { Ok::<_, GovernError>(json!(1)) },
        )
        .await;
    assert!(same.is_ok(), "{same:?}");
    let other_tenant = action
        .run_as(
            who("agent-1").with_tenant("B"),
            Args::new().arg("amount", &100.0),
            || async { Ok::<_, GovernError>(json!(1)) },
        )
        .await;
    assert!(
        matches!(other_tenant, Err(GovernError::Pending { .. })),
        "{other_tenant:?}"
    );
}

#[tokio::test]
async fn a_changed_policy_voids_its_grants() {
    let g = Governor::builder().build().unwrap();
    let action = pay(&g, &file(&GRANTED.replace("QUORUM", "1")), Arc::default());
    let id = ask(&action, 100.0).await;
    g.approve_and_grant(
        id,
        &who("carol"),
        None,
        Duration::from_secs(600),
        true,
        None,
    )
    .await
    .unwrap();
    // The same action, now with one more policy: another version.
    let changed = g
        .action("pay")
        .policies(file(&GRANTED.replace("QUORUM", "1")).policies_for("pay"))
        .policy(policy_fn("extra", |_| Decision::Allow))
        .resumable(|t: Transfer| async move { Ok::<_, GovernError>(json!(t.amount)) })
        .build()
        .unwrap();
    assert_ne!(changed.policy_version(), action.policy_version());
    let again = changed
        .run_as(
            who("agent-1"),
            Args::new().arg("amount", &100.0),
            || async { Ok::<_, GovernError>(Value::Null) },
        )
        .await;
    assert!(
        matches!(again, Err(GovernError::Pending { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn grants_are_listed_and_revoked_on_the_record() {
    let g = Governor::builder().build().unwrap();
    let action = pay(&g, &file(&GRANTED.replace("QUORUM", "1")), Arc::default());
    let id = ask(&action, 100.0).await;
    let (_, grant) = g
        .approve_and_grant(
            id,
            &who("carol"),
            None,
            Duration::from_secs(600),
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(g.grants(100).await.unwrap(), vec![grant.clone()]);
    let mut live = g.events().subscribe();

    let err = g
        .revoke_grant(grant.id, &who("mallory"), "mine now")
        .await
        .unwrap_err();
    assert!(matches!(err, GovernError::Denied { .. }), "{err}");
    assert_eq!(g.grants(100).await.unwrap().len(), 1, "still there");

    let revoked = g
        .revoke_grant(grant.id, &who("carol"), "the payroll run is over")
        .await
        .unwrap();
    assert_eq!(revoked, Some(grant.clone()));
    assert!(g.grants(100).await.unwrap().is_empty());
    assert_eq!(
        g.revoke_grant(grant.id, &who("carol"), "again")
            .await
            .unwrap(),
        None
    );
    // The covered call asks again.
    let again = action
        .run_as(
            who("agent-1"),
            Args::new().arg("amount", &100.0),
            || async { Ok::<_, GovernError>(json!(1)) },
        )
        .await;
    assert!(
        matches!(again, Err(GovernError::Pending { .. })),
        "{again:?}"
    );
    // On the record: who, what and why; and announced.
    let audit = g.store().audit_entries(0, 100).await.unwrap();
    let revocations: Vec<_> = audit
        .iter()
        .filter(|a| &*a.record.action == REVOKE_GRANT_ACTION)
        .collect();
    assert_eq!(revocations.len(), 2, "the refused attempt is recorded too");
    let done = revocations
        .iter()
        .find(|a| a.record.status == ExecutionStatus::Completed)
        .unwrap();
    assert_eq!(&*done.record.principal, "carol");
    let inputs = done.record.inputs.as_ref().unwrap().value();
    assert_eq!(inputs["reason"], "the payroll run is over");
    assert_eq!(inputs["grant"], grant.id.to_string());
    let mut kinds = Vec::new();
    while let Ok(e) = live.try_recv() {
        kinds.push(e.kind);
    }
    assert!(kinds.contains(&EventKind::GrantRevoked), "{kinds:?}");
}
