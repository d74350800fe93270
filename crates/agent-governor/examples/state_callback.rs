//! `on_state_saved`: get the execution id (the ticket) the moment state is
//! saved, to hand to a client, a tracker or monitoring.
//!
//! Run: `cargo run -p agent-governor --example state_callback`

use std::sync::{Arc, Mutex};

use agent_governor::prelude::*;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let governor = Governor::builder().build()?;
    let tickets: Arc<Mutex<Vec<(ExecutionId, Value)>>> = Arc::default();
    let t = Arc::clone(&tickets);
    let transfer = governor
        .action("large_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .on_state_saved(move |id, state| {
            if state["approval_required"] == true {
                println!(
                    "state saved: return 202 with execution_id={id} (checkpoint {})",
                    state["checkpoint"]
                );
            }
            if let Ok(mut t) = t.lock() {
                t.push((id, state.clone()));
            }
        })
        .build()?;

    let result = transfer
        .run(
            Args::new()
                .arg("amount", &50_000)
                .arg("recipient", "BigCorp"),
            || async { Ok::<_, GovernError>(()) },
        )
        .await;
    let Err(GovernError::Pending { execution_id }) = result else {
        return Err("expected the call to wait for the CFO".into());
    };
    let saved = tickets.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(saved.last().map(|(id, _)| *id), Some(execution_id));
    println!(
        "the callback had the ticket before the call returned: {}",
        saved.len()
    );
    Ok(())
}
