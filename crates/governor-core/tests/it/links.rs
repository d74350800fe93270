//! One-time approval links: a link decides once, only what its email
//! showed, only while the request waits on its stage.

use chrono::Utc;
use governor_core::*;
use serde_json::json;

fn governor() -> Governor {
    Governor::builder()
        .link_key(LinkKey::from_bytes([42; 32]))
        .build()
        .unwrap()
}

#[derive(serde::Deserialize)]
struct Wire {
    amount: u32,
}

/// A wire the finance role approves, two of them, then the CFO.
fn wire(g: &Governor, quorum: u32) -> Action {
    g.action("wire")
        .policy(ApprovalPolicy::new(["role:finance"]).quorum(quorum, true))
        .policy(ApprovalPolicy::new(["cfo"]).named("CFO"))
        .resumable(|w: Wire| async move { Ok::<_, String>(w.amount) })
        .build()
        .unwrap()
}

async fn park(action: &Action, amount: u32) -> ExecutionId {
    match action
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &amount),
            || async { Ok::<_, GovernError>(0) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected a parked call, got {other:?}"),
    }
}

/// The link the email for `stage` would carry to `address`.
async fn link(
    g: &Governor,
    id: ExecutionId,
    stage: usize,
    approver: &str,
    address: &str,
    verdict: Verdict,
) -> String {
    let e = g.execution(id).await.unwrap().unwrap();
    g.sign_link(&ApprovalLink {
        execution_id: id,
        stage,
        approver: approver.into(),
        address: address.into(),
        verdict,
        digest: e.approval.unwrap().digest,
        expires_at: Utc::now() + chrono::Duration::hours(1),
        notification: uuid::Uuid::now_v7(),
    })
    .unwrap()
}

#[tokio::test]
async fn a_link_decides_once_as_the_address_it_was_sent_to() {
    let g = governor();
    let action = wire(&g, 2);
    let id = park(&action, 500).await;
    let ana = link(
        &g,
        id,
        0,
        "role:finance",
        "ana@example.com",
        Verdict::Approve,
    )
    .await;
    // Opening it (the confirmation page) decides nothing.
    let open = g.open_link(&ana).await.unwrap();
    assert_eq!(open.link.address, "ana@example.com");
    assert_eq!(open.stage().unwrap().decisions.len(), 0);
    let e = g.decide_by_link(&ana, None).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::AwaitingApproval);
    let decision = &e.approval.as_ref().unwrap().stages[0].decisions[0];
    assert_eq!(decision.approver, "ana@example.com");
    assert_eq!(decision.via.as_deref(), Some(VIA_LINK));
    // Used once: every later use is refused, the page says so.
    assert!(matches!(
        g.decide_by_link(&ana, None).await,
        Err(LinkError::Used { .. })
    ));
    assert!(matches!(
        g.open_link(&ana).await,
        Err(LinkError::Used { .. })
    ));
    // A second person's link completes the quorum; the stage is over for
    // a third.
    let bo = link(
        &g,
        id,
        0,
        "role:finance",
        "bo@example.com",
        Verdict::Approve,
    )
    .await;
    let cy = link(
        &g,
        id,
        0,
        "role:finance",
        "cy@example.com",
        Verdict::Approve,
    )
    .await;
    g.decide_by_link(&bo, None).await.unwrap();
    assert!(matches!(
        g.decide_by_link(&cy, None).await,
        Err(LinkError::StageOver { now: 2 })
    ));
    // The CFO's reject link rejects.
    let cfo = link(&g, id, 1, "cfo", "cfo@example.com", Verdict::Reject).await;
    let e = g
        .decide_by_link(&cfo, Some("not this month"))
        .await
        .unwrap();
    assert_eq!(e.status, ExecutionStatus::Rejected);
    assert!(matches!(
        g.open_link(&cfo).await,
        Err(LinkError::Used { .. })
    ));
    let audit = g.store().audit_entries(0, 100).await.unwrap();
    assert!(
        audit
            .iter()
            .flat_map(|a| a.record.decisions.iter())
            .any(|d| d
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("through an emailed link"))),
        "the audit says how the decision came"
    );
}

#[tokio::test]
async fn a_link_for_a_request_decided_elsewhere_edited_or_expired_decides_nothing() {
    let g = governor();
    let action = wire(&g, 1);
    // Decided in the console first.
    let id = park(&action, 100).await;
    let stale = link(
        &g,
        id,
        0,
        "role:finance",
        "ana@example.com",
        Verdict::Approve,
    )
    .await;
    g.reject(
        id,
        &Principal::new("bo").with_roles(["finance"]),
        Some("no"),
    )
    .await
    .unwrap();
    assert!(matches!(
        g.decide_by_link(&stale, None).await,
        Err(LinkError::Decided {
            status: ExecutionStatus::Rejected
        })
    ));
    // Edited since the email: another approver changed the amount, which
    // also completed the first stage.
    let id = park(&action, 100).await;
    let ana = link(
        &g,
        id,
        0,
        "role:finance",
        "ana@example.com",
        Verdict::Approve,
    )
    .await;
    let cfo = link(&g, id, 1, "cfo", "cfo@example.com", Verdict::Approve).await;
    g.approve_with_edits(
        id,
        &Principal::new("bo").with_roles(["finance"]),
        json!({"amount": 1_000_000}),
        None,
        None,
    )
    .await
    .unwrap();
    assert!(matches!(g.open_link(&ana).await, Err(LinkError::Edited)));
    assert!(matches!(
        g.decide_by_link(&cfo, None).await,
        Err(LinkError::Edited)
    ));
    // Expired: the link's own time, and a tampered one.
    let id = park(&action, 100).await;
    let e = g.execution(id).await.unwrap().unwrap();
    let expired = g
        .sign_link(&ApprovalLink {
            execution_id: id,
            stage: 0,
            approver: "role:finance".into(),
            address: "ana@example.com".into(),
            verdict: Verdict::Approve,
            digest: e.approval.unwrap().digest,
            expires_at: Utc::now() - chrono::Duration::seconds(1),
            notification: uuid::Uuid::now_v7(),
        })
        .unwrap();
    assert!(matches!(
        g.decide_by_link(&expired, None).await,
        Err(LinkError::Expired { .. })
    ));
    let good = link(
        &g,
        id,
        0,
        "role:finance",
        "ana@example.com",
        Verdict::Approve,
    )
    .await;
    let tampered = good.replacen("gl1.ey", "gl1.ez", 1);
    assert!(matches!(
        g.decide_by_link(&tampered, None).await,
        Err(LinkError::Forged | LinkError::Malformed)
    ));
    // Another server's key.
    let other = Governor::builder()
        .shared_store(g.store().clone())
        .link_key(LinkKey::from_bytes([1; 32]))
        .build()
        .unwrap();
    assert!(matches!(
        other.decide_by_link(&good, None).await,
        Err(LinkError::Forged)
    ));
    assert_eq!(
        g.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::AwaitingApproval,
        "no refused link decided anything"
    );
}

#[tokio::test]
async fn a_link_obeys_the_policy_reason_and_sign_in() {
    let g = governor();
    let action = g
        .action("pay")
        .policy(ApprovalPolicy::new(["cfo"]).require_reason(true))
        .build()
        .unwrap();
    let id = park(&action, 5).await;
    let cfo = link(&g, id, 0, "cfo", "cfo@example.com", Verdict::Approve).await;
    assert!(matches!(
        g.decide_by_link(&cfo, Some("  ")).await,
        Err(LinkError::Decision(ApprovalError::ReasonRequired { .. }))
    ));
    assert_eq!(
        g.decide_by_link(&cfo, Some("invoice 42"))
            .await
            .unwrap()
            .status,
        ExecutionStatus::Approved
    );
    let signed_in = g
        .action("pay_signed_in")
        .policy(ApprovalPolicy::new(["cfo"]).notify(NotifySpec {
            links: LinkMode::SignIn,
            ..NotifySpec::default()
        }))
        .build()
        .unwrap();
    let id = park(&signed_in, 5).await;
    let cfo = link(&g, id, 0, "cfo", "cfo@example.com", Verdict::Approve).await;
    assert!(matches!(
        g.decide_by_link(&cfo, None).await,
        Err(LinkError::SignInRequired)
    ));
    // Without a key, no links at all.
    let keyless = Governor::builder().build().unwrap();
    assert!(!keyless.signs_links());
    assert!(matches!(
        keyless.open_link(&cfo).await,
        Err(LinkError::NotConfigured)
    ));
}
