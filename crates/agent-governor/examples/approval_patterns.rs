//! Sync vs async approval patterns side by side.
//!
//! - sync: the caller stays connected for `wait`; a decision inside the
//!   window continues the call in place.
//! - async: the caller gets a ticket (`GovernError::Pending`) at once; the
//!   request stays open until a human decides or it expires.
//!
//! Run: `cargo run -p agent-governor --example approval_patterns`

use std::time::Duration;

use agent_governor::EventKind;
use agent_governor::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let governor = Governor::builder().build()?;
    let lead = Principal::new("lee").with_roles(["team-lead"]);

    // A team lead who answers within a second (in real life: a Slack button).
    let g = governor.clone();
    let approver = lead.clone();
    governor
        .events()
        .on_async(EventKind::ApprovalRequested, move |event| {
            let (g, approver) = (g.clone(), approver.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = g.approve(event.execution_id, &approver, Some("ok")).await;
            }
        })?;

    let sync = governor
        .action("restart_service")
        .policy(ApprovalPolicy::new(["role:team-lead"]).wait(Duration::from_secs(5)))
        .build()?;
    let started = std::time::Instant::now();
    let out: String = sync
        .run(Args::new().arg("service", "billing"), || async {
            Ok::<_, GovernError>("restarted".to_string())
        })
        .await?;
    println!(
        "sync:  {out} after {:?} (the caller waited for the decision)",
        started.elapsed()
    );

    let asynchronous = governor
        .action("delete_backups")
        .policy(
            ApprovalPolicy::new(["role:storage-admin"])
                .expires_in(Some(Duration::from_secs(24 * 3600))),
        )
        .build()?;
    match asynchronous
        .run(Args::new().arg("older_than_days", &90), || async {
            Ok::<_, GovernError>(())
        })
        .await
    {
        Err(GovernError::Pending { execution_id }) => {
            println!(
                "async: ticket {execution_id} returned at once; a storage admin decides later"
            );
            let e = governor.execution(execution_id).await?.ok_or("missing")?;
            assert_eq!(e.status, ExecutionStatus::AwaitingApproval);
        }
        other => return Err(format!("expected a ticket, got {other:?}").into()),
    }
    Ok(())
}
