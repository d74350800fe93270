//! Manual resume: your code decides when an approved execution runs (a
//! webhook from a ticketing system, a cron job, a button).
//!
//! Run: `cargo run -p agent-governor --example manual_resume`

use std::time::Duration;

use agent_governor::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Refund {
    order: String,
    amount: f64,
}

async fn refund(r: Refund) -> Result<String, GovernError> {
    Ok(format!("refunded {:.2} for order {}", r.amount, r.order))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let governor = Governor::builder().build()?;
    let action = governor
        .action("issue_refund")
        .policy(ApprovalPolicy::new(["role:support-lead"]))
        .resumable(refund)
        .build()?;

    let ticket = match action
        .run(
            Args::new().arg("order", "A-1001").arg("amount", &249.0),
            || {
                refund(Refund {
                    order: "A-1001".into(),
                    amount: 249.0,
                })
            },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => return Err(format!("expected a ticket, got {other:?}").into()),
    };
    println!("refund parked as {ticket}");

    // Resuming before anyone approved is refused.
    if let Err(e) = governor.resume(ticket).await {
        println!("resume before approval: {e}");
    }

    // The support lead approves in the ticketing system; its webhook lands
    // here and resumes the original execution.
    let lead = Principal::new("sue").with_roles(["support-lead"]);
    governor
        .approve(ticket, &lead, Some("customer verified"))
        .await?;
    let done = governor.resume(ticket).await?;
    println!(
        "webhook resumed it: {:?} -> {}",
        done.status,
        done.output.as_ref().map(|o| o.as_str()).unwrap_or("-")
    );
    assert_eq!(done.status, ExecutionStatus::Completed);

    // A second webhook delivery does not run it again.
    if let Err(e) = governor.resume(ticket).await {
        println!("duplicate webhook: {e}");
    }
    let same = governor
        .wait_for_result(ticket, Duration::from_secs(1))
        .await?;
    assert_eq!(same.id, ticket);
    Ok(())
}
