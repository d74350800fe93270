//! Actions run elsewhere: admit, start after approval, report.

use std::time::Duration;

use governor_core::{
    Action, ApprovalPolicy, Args, AuthorizationPolicy, Call, CompleteError, EXTERNAL_RUNNER,
    ExecutionStatus, GovernError, Governor, MemoryStore, Principal, ResumeError, ValidationPolicy,
};
use serde_json::{Value, json};

fn governor() -> Governor {
    Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap()
}

fn agent_call(amount: u64) -> Call {
    Call::new(Args::new().arg("amount", &amount)).principal(Principal::new("agent"))
}

fn export(g: &Governor) -> Action {
    g.action("export")
        .policy(
            ValidationPolicy::new().output_validator(|o: &Value| -> Result<(), String> {
                if o["rows"].as_u64() > Some(100) {
                    Err("too many rows exported".into())
                } else {
                    Ok(())
                }
            }),
        )
        .external(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_allowed_call_runs_elsewhere_and_its_report_completes_it() {
    let g = governor();
    let admitted = export(&g).admit(agent_call(3)).await.unwrap();
    assert_eq!(admitted.arguments.value(), json!({"amount": 3}));
    let running = g.execution(admitted.execution_id).await.unwrap().unwrap();
    assert_eq!(running.status, ExecutionStatus::Running);
    assert_eq!(running.lease.unwrap().owner, EXTERNAL_RUNNER);

    let done = g
        .complete_external(admitted.execution_id, Ok(json!({"rows": 3})))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.output.unwrap().value(), json!({"rows": 3}));
    assert!(done.lease.is_none());

    let again = g
        .complete_external(admitted.execution_id, Ok(json!({"rows": 4})))
        .await
        .unwrap_err();
    assert!(matches!(
        again,
        CompleteError::NotRunning {
            status: ExecutionStatus::Completed,
            ..
        }
    ));
    let audit = g.store().audit_entries(0, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].record.status, ExecutionStatus::Completed);
}

#[tokio::test]
async fn reported_errors_and_rejected_outputs_fail_the_execution() {
    let g = governor();
    let action = export(&g);
    let failing = action.admit(agent_call(1)).await.unwrap();
    let failed = g
        .complete_external(failing.execution_id, Err("disk full".into()))
        .await
        .unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.failure.unwrap().message, "disk full");

    let too_big = action.admit(agent_call(2)).await.unwrap();
    let refused = g
        .complete_external(too_big.execution_id, Ok(json!({"rows": 5000})))
        .await
        .unwrap();
    assert_eq!(refused.status, ExecutionStatus::Failed);
    let failure = refused.failure.unwrap();
    assert_eq!(failure.kind, "post_policy");
    assert!(
        failure.message.contains("too many rows"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn denied_and_pending_calls_are_not_admitted() {
    let g = governor();
    let guarded = g
        .action("wire")
        .policy(AuthorizationPolicy::new().require_roles(["treasury"]))
        .external(Duration::from_secs(60))
        .build()
        .unwrap();
    let denied = guarded.admit(agent_call(1)).await.unwrap_err();
    assert!(matches!(denied, GovernError::Denied { .. }), "{denied}");

    let approved = g
        .action("refund")
        .policy(ApprovalPolicy::new(["cfo"]))
        .external(Duration::from_secs(60))
        .build()
        .unwrap();
    let GovernError::Pending { execution_id } = approved.admit(agent_call(900)).await.unwrap_err()
    else {
        panic!("expected pending");
    };
    let early = g.start_external(execution_id).await.unwrap_err();
    assert!(matches!(early, ResumeError::NotApproved { .. }), "{early}");
    g.approve_with_edits(
        execution_id,
        &Principal::new("cfo"),
        json!({"amount": 500}),
        Some("cap"),
        None,
    )
    .await
    .unwrap();
    let started = g.start_external(execution_id).await.unwrap();
    assert_eq!(started.arguments.value(), json!({"amount": 500}));
    let twice = g.start_external(execution_id).await.unwrap_err();
    assert!(matches!(twice, ResumeError::NotApproved { .. }), "{twice}");
    let done = g
        .complete_external(execution_id, Ok(json!("refunded")))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
}

#[tokio::test]
async fn a_runner_that_never_reports_is_failed_after_its_deadline() {
    let g = governor();
    let hasty = g
        .action("probe")
        .external(Duration::from_millis(1))
        .build()
        .unwrap();
    let admitted = hasty.admit(agent_call(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(g.take_over_abandoned(10).await.unwrap(), 1);
    let failed = g.execution(admitted.execution_id).await.unwrap().unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.failure.unwrap().kind, "unreported");
    let late = g
        .complete_external(admitted.execution_id, Ok(json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(late, CompleteError::NotRunning { .. }), "{late}");
}

#[tokio::test]
async fn only_external_runs_take_reports() {
    let g = governor();
    let local = g.action("local").build().unwrap();
    local
        .run(Args::new(), || async { Ok::<_, GovernError>(json!(1)) })
        .await
        .unwrap();
    let id = g.store().executions(&Default::default()).await.unwrap()[0].id;
    let err = g.complete_external(id, Ok(json!(2))).await.unwrap_err();
    assert!(matches!(err, CompleteError::NotRunning { .. }), "{err}");
    let missing = g
        .complete_external(governor_core::ExecutionId::new(), Ok(json!(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, CompleteError::NotFound { .. }),
        "{missing}"
    );
}
