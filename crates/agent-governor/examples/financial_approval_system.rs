//! The seed's financial approval system, for real: quick transfers wait a
//! few seconds for a manager (sync pattern); large ones return a ticket at
//! once, stay parked durably in SQLite, and complete by themselves after
//! the CFO approves (async pattern, resume worker).
//!
//! Run: `cargo run -p agent-governor --example financial_approval_system`

use std::time::Duration;

use agent_governor::prelude::*;
use agent_governor::sqlite::SqliteStore;
use agent_governor::{Action, EventKind};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Transfer {
    amount: f64,
    recipient: String,
}

async fn send_wire(t: Transfer) -> Result<Value, GovernError> {
    Ok(json!({"status": "completed", "amount": t.amount, "recipient": t.recipient}))
}

fn transfer(amount: f64, recipient: &str) -> Args {
    Args::new()
        .arg("amount", &amount)
        .arg("recipient", recipient)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("governor-financial-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let governor = Governor::builder()
        .store(SqliteStore::open(dir.join("governor.db")).await?)
        .build()?;

    let quick: Action = governor
        .action("quick_wire_transfer")
        .policy(
            ValidationPolicy::new()
                .input_validator(|i: &Value| i["amount"].as_f64().is_some_and(|a| a < 10_000.0)),
        )
        .policy(ApprovalPolicy::new(["manager@company.com"]).wait(Duration::from_secs(5)))
        .resumable(send_wire)
        .build()?;
    let large: Action = governor
        .action("large_wire_transfer")
        .policy(
            ValidationPolicy::new()
                .input_validator(|i: &Value| i["amount"].as_f64().is_some_and(|a| a >= 10_000.0)),
        )
        .policy(
            ApprovalPolicy::new(["cfo@company.com"])
                .require_reason(true)
                .timeout_seconds(4 * 3600),
        )
        .resumable(send_wire)
        .build()?;

    // The manager answers quick requests from Slack within seconds; here a
    // handler of `approval.requested` stands in for them.
    let manager = Principal::new("mia").with_attribute("email", "manager@company.com");
    let g = governor.clone();
    governor
        .events()
        .on_async(EventKind::ApprovalRequested, move |event| {
            let (g, manager) = (g.clone(), manager.clone());
            async move {
                if &*event.action == "quick_wire_transfer" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = g
                        .approve(event.execution_id, &manager, Some("looks fine"))
                        .await;
                }
            }
        })?;
    let worker = governor.spawn_resume_worker("worker-1", Duration::from_millis(50));
    let agent = Principal::new("agent-7").with_roles(["payments"]);

    println!("sync pattern: $5,000 to Acme Corp, the caller waits for the manager");
    let receipt: Value = quick
        .run_as(agent.clone(), transfer(5_000.0, "Acme Corp"), || {
            send_wire(Transfer {
                amount: 5_000.0,
                recipient: "Acme Corp".into(),
            })
        })
        .await?;
    println!("  -> {receipt}");

    println!("async pattern: $50,000 to BigCorp, the caller gets a ticket at once");
    let ticket = match large
        .run_as(agent, transfer(50_000.0, "BigCorp"), || {
            send_wire(Transfer {
                amount: 50_000.0,
                recipient: "BigCorp".into(),
            })
        })
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => return Err(format!("expected a ticket, got {other:?}").into()),
    };
    println!("  -> 202 Accepted, execution_id = {ticket}");

    println!("[later] the CFO approves from the approval console");
    let cfo = Principal::new("carol").with_attribute("email", "cfo@company.com");
    governor
        .approve(ticket, &cfo, Some("invoice 2026-114 checked"))
        .await?;

    let done = governor
        .wait_for_result(ticket, Duration::from_secs(10))
        .await?;
    println!(
        "  -> resumed by the worker: {:?}, output {}",
        done.status,
        done.output.as_ref().map(|o| o.as_str()).unwrap_or("-")
    );
    assert_eq!(done.status, ExecutionStatus::Completed);
    worker.abort();

    let audit = governor.store().audit_entries(0, 100).await?;
    println!(
        "audit log: {} entries, chain intact: {}",
        audit.len(),
        agent_governor::verify_chain(&audit).is_ok()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
