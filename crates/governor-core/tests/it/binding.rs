//! An approval is bound to a digest of action, arguments, requester and
//! policy version: what was approved is what runs, and a call approved
//! under other policies is evaluated again before it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor_core::store::Transition;
use governor_core::*;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Refund {
    amount: u32,
}

/// A resumable `refund` action counting its runs in `runs`.
pub(crate) fn refund_builder(g: &Governor, runs: &Arc<AtomicUsize>) -> ActionBuilder {
    let runs = Arc::clone(runs);
    g.action("refund").resumable(move |r: Refund| {
        let runs = Arc::clone(&runs);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, GovernError>(json!({"refunded": r.amount}))
        }
    })
}

/// The refund action with these policies (building it registers it,
/// replacing an earlier version, as a redeploy would).
fn refund(g: &Governor, runs: &Arc<AtomicUsize>, policies: Vec<Arc<dyn Policy>>) -> Action {
    refund_builder(g, runs).policies(policies).build().unwrap()
}

fn approval(approvers: &[&str]) -> Arc<dyn Policy> {
    Arc::new(ApprovalPolicy::new(approvers.iter().copied()))
}

async fn parked(action: &Action) -> ExecutionId {
    let err = action
        .run_as(
            Principal::new("agent").with_roles(["support"]),
            Args::new().arg("amount", &120u32),
            || async { Ok::<_, GovernError>(json!("ran in place")) },
        )
        .await
        .unwrap_err();
    match err {
        GovernError::Pending { execution_id } => execution_id,
        other => panic!("{other:?}"),
    }
}

/// A governor with a parked, approved refund.
async fn approved(policies: Vec<Arc<dyn Policy>>) -> (Governor, Arc<AtomicUsize>, ExecutionId) {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let id = parked(&refund(&g, &runs, policies)).await;
    g.approve(id, &Principal::new("cfo"), None).await.unwrap();
    (g, runs, id)
}

#[tokio::test]
async fn requests_carry_the_digest_and_the_decision_audit_keeps_it() {
    let (g, _, id) = approved(vec![approval(&["cfo"])]).await;
    let e = g.execution(id).await.unwrap().unwrap();
    let request = e.approval.unwrap();
    let digest = request.digest.clone().expect("bound");
    assert_eq!(digest.len(), 64);
    let action = g.action("refund").policies(vec![approval(&["cfo"])]);
    let version = action.build().unwrap().policy_version().to_owned();
    assert_eq!(request.policy_version.as_deref(), Some(version.as_str()));
    let audit = g.store().audit_entries(0, 1000).await.unwrap();
    let decision = audit
        .iter()
        .find(|a| a.record.status == ExecutionStatus::Approved)
        .expect("the decision is audited");
    assert_eq!(decision.record.approved_digest.as_deref(), Some(&*digest));
}

#[tokio::test]
async fn arguments_changed_in_the_store_after_approval_are_refused() {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let id = parked(&refund(&g, &runs, vec![approval(&["cfo"])])).await;
    // Someone with write access to the store swaps the arguments while
    // the request waits; the approver decides on what was asked.
    let e = g.execution(id).await.unwrap().unwrap();
    let mut request = e.approval.clone().unwrap();
    request.edited_inputs = Some(Json::encode(&json!({"amount": 99_999})).unwrap());
    let mut t = Transition::new(
        id,
        ExecutionStatus::AwaitingApproval,
        ExecutionStatus::AwaitingApproval,
    );
    t.approval = Some(request);
    g.store().transition(&t).await.unwrap();
    g.approve(id, &Principal::new("cfo"), None).await.unwrap();

    let err = g.resume(id).await.unwrap_err();
    assert!(
        matches!(err, ResumeError::NotWhatWasApproved { execution_id } if execution_id == id),
        "{err:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the action never ran");
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Failed);
    let failure = e.failure.unwrap();
    assert_eq!(failure.policy.as_deref(), Some("approval binding"));
    assert!(
        failure.message.contains("not what was approved"),
        "{failure:?}"
    );
    let audit = g.store().audit_entries(0, 1000).await.unwrap();
    assert_eq!(
        audit.last().unwrap().record.status,
        ExecutionStatus::Failed,
        "the refusal is audited"
    );
}

#[tokio::test]
async fn edits_are_what_is_approved() {
    let g = Governor::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let id = parked(&refund(&g, &runs, vec![approval(&["cfo"])])).await;
    let before = g.execution(id).await.unwrap().unwrap().approval.unwrap();
    g.approve_with_edits(
        id,
        &Principal::new("cfo"),
        json!({"amount": 80}),
        None,
        None,
    )
    .await
    .unwrap();
    let after = g.execution(id).await.unwrap().unwrap().approval.unwrap();
    assert_ne!(after.digest, before.digest, "the digest follows the edits");
    let done = g.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.output.unwrap().value(), json!({"refunded": 80}));
}

#[tokio::test]
async fn a_policy_added_since_approval_that_denies_ends_the_call() {
    let (g, runs, id) = approved(vec![approval(&["cfo"])]).await;
    // Redeployed: refunds now also need the `finance` role.
    refund(
        &g,
        &runs,
        vec![
            approval(&["cfo"]),
            Arc::new(AuthorizationPolicy::new().require_roles(["finance"])),
        ],
    );
    let err = g.resume(id).await;
    let e = g.execution(id).await.unwrap().unwrap();
    assert!(err.is_ok(), "{err:?}");
    assert_eq!(e.status, ExecutionStatus::Denied);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn changed_approvers_ask_again_and_the_new_decision_lets_it_run() {
    let (g, runs, id) = approved(vec![approval(&["cfo"])]).await;
    refund(&g, &runs, vec![approval(&["ceo"])]);
    let e = g.resume(id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::AwaitingApproval);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let request = e.approval.unwrap();
    assert_eq!(request.stages.len(), 1);
    assert_eq!(request.stages[0].spec.approvers, vec!["ceo"]);

    let cfo = g
        .approve(id, &Principal::new("cfo"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(cfo, ApprovalError::NotAnApprover { .. }),
        "{cfo:?}"
    );
    g.approve(id, &Principal::new("ceo"), None).await.unwrap();
    let done = g.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_new_version_with_the_same_approval_runs_without_asking_again() {
    let (g, runs, id) = approved(vec![approval(&["cfo"])]).await;
    let action = refund_builder(&g, &runs)
        .policies(vec![approval(&["cfo"])])
        .policy_version("refunds-v2")
        .build()
        .unwrap();
    let first = g.execution(id).await.unwrap().unwrap();
    assert_ne!(
        first.approval.unwrap().policy_version.as_deref(),
        Some(action.policy_version()),
        "the label changes the version"
    );
    let done = g.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn policy_versions_follow_settings() {
    let version = |p: Arc<dyn Policy>| {
        Action::builder("a")
            .policies(vec![p])
            .build()
            .unwrap()
            .policy_version()
            .to_owned()
    };
    let rl = |n| Arc::new(RateLimitPolicy::new(n, std::time::Duration::from_secs(60))) as _;
    assert_eq!(version(rl(5)), version(rl(5)));
    assert_ne!(version(rl(5)), version(rl(6)));
    assert_ne!(version(approval(&["a"])), version(approval(&["b"])));
    let roles = |r: &str| Arc::new(AuthorizationPolicy::new().require_roles([r.to_owned()])) as _;
    assert_ne!(version(roles("admin")), version(roles("finance")));
}
