//! `governor demo --serve`: the HTTP API on the demo's file, fresh tokens,
//! and a simulated agent that keeps asking to transfer money through it:
//! small transfers run, large ones wait for the CFO, some are denied.

use std::time::Duration;

use agent_governor::http::{ApiKeys, READ_PERMISSION, RESUME_PERMISSION};
use agent_governor::{
    Action, Args, AuditPolicy, AuthorizationPolicy, Call, Display, DisplayField, ExecutionStatus,
    GovernError, Governor, Mask, Principal, RateLimitPolicy, ValidationPolicy,
};
use anyhow::Context;
use serde_json::json;

use crate::demo::Lcg;

/// The demo's one tenant.
pub(crate) const DEMO_TENANT: &str = "acme";

/// 32 random bytes from the OS.
pub(crate) fn random_key() -> anyhow::Result<[u8; 32]> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes)
}

/// A random token (32 bytes from the OS, hex).
pub(crate) fn random_token() -> anyhow::Result<String> {
    Ok(format!(
        "gov_{}",
        random_key()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// The action the simulated agent submits (it runs the transfer itself).
fn transfer_action(governor: &Governor) -> anyhow::Result<Action> {
    let schema = json!({
        "type": "object",
        "properties": {"amount": {"type": "number", "exclusiveMinimum": 0}, "to": {"type": "string", "minLength": 1}},
        "required": ["amount", "to"]
    });
    Ok(governor
        .action("transfer_funds")
        .policy(
            ValidationPolicy::new()
                .named("TransferValidation")
                .input_schema(&schema)?,
        )
        .policy(
            AuthorizationPolicy::new()
                .named("PaymentsRole")
                .require_roles(["payments"]),
        )
        .policy(
            RateLimitPolicy::new(30, Duration::from_secs(60))
                .named("AgentRateLimit")
                .per_principal(),
        )
        .policy(
            AuditPolicy::new()
                .named("PaymentsAudit")
                .mask("iban", Mask::Last4),
        )
        .policy(crate::demo::large_transfers()?)
        .display(
            Display::titled("Wire {amount:currency(EUR)} to {to}")
                .field(DisplayField::new("amount").label("Amount").currency("EUR"))
                .field(DisplayField::new("to").label("To"))
                .field(DisplayField::new("iban").label("IBAN"))
                .on_approve("The money is sent to the recipient immediately."),
        )
        .external(Duration::from_secs(600))
        .build()?)
}

pub(crate) async fn run(
    governor: Governor,
    listener: tokio::net::TcpListener,
    seed: u64,
    every: Duration,
) -> anyhow::Result<()> {
    let (cfo, auditor) = (random_token()?, random_token()?);
    let keys = ApiKeys::new()
        .with_token(
            &cfo,
            // Everyone in the demo works for one tenant, acme: tenants
            // see and decide only their own calls.
            Principal::new("cfo")
                .with_attribute("email", "cfo@company.com")
                .with_tenant(DEMO_TENANT),
        )
        .with_token(
            &auditor,
            Principal::new("auditor")
                .with_permissions([READ_PERMISSION, RESUME_PERMISSION])
                .with_tenant(DEMO_TENANT),
        );
    let transfer = transfer_action(&governor)?;
    let url = format!("http://{}", listener.local_addr()?);
    out!("\nServing the approval API at {url}");
    out!("  approval console: {url}/dashboard/ (sign in with the CFO token)");
    out!("  CFO token:     {cfo}");
    out!("  auditor token: {auditor}");
    out!("Decide what the agent asks for:");
    out!("  export GOVERNOR_SERVER={url} GOVERNOR_TOKEN={cfo}");
    out!("  governor approvals list --mine");
    out!("  governor approvals approve <id> --reason \"checked\"   (or: reject <id> --reason ...)");
    out!("  curl -H \"Authorization: Bearer {auditor}\" {url}/govern/executions");
    out!("The agent asks every {every:?}; Ctrl-C stops.\n");
    let sweeper = governor.spawn_expiry_sweeper(Duration::from_secs(5));
    // The first part's parked transfers complete here once approved.
    let worker = governor.spawn_resume_worker("demo", Duration::from_millis(500));
    let agent = tokio::spawn(agent_loop(governor.clone(), transfer, seed, every));
    let app = agent_governor::http::api(governor, keys);
    agent_governor::http::serve(listener, app, crate::serve::shutdown_signal()).await?;
    agent.abort();
    sweeper.abort();
    worker.abort();
    out!("demo stopped");
    Ok(())
}

/// Asks for a transfer every `every`; runs allowed ones, waits for decisions
/// on the others in the background.
async fn agent_loop(governor: Governor, transfer: Action, seed: u64, every: Duration) {
    let mut rng = Lcg(seed ^ 0x5eed);
    let agent = Principal::new("agent-7")
        .with_roles(["payments"])
        .with_tenant(DEMO_TENANT);
    let recipients = ["Acme Corp", "BigCorp", "Globex", ""];
    let ibans = [
        "DE89 3704 0044 0532 0130 00",
        "FR76 3000 6000 0112 3456 7890 189",
        "GB29 NWBK 6016 1331 9268 19",
    ];
    loop {
        let amount = match rng.next() % 10 {
            0..=5 => (rng.next() % 5_000 + 50) as f64,
            6..=8 => (rng.next() % 90_000 + 10_000) as f64,
            _ => -((rng.next() % 100) as f64),
        };
        let to = recipients[(rng.next() % 4) as usize];
        let iban = ibans[(rng.next() % 3) as usize];
        let args = Args::new()
            .arg("amount", &amount)
            .arg("to", &to)
            .arg("iban", &iban);
        let asked = format!("agent-7 asks to send {amount:>9.2} to {to:<10}");
        match transfer
            .admit(Call::new(args).principal(agent.clone()))
            .await
        {
            Ok(admitted) => {
                let done = governor
                    .complete_external(admitted.execution_id, Ok(json!({"sent": amount, "to": to})))
                    .await;
                let status = done.map_or_else(|e| e.to_string(), |e| e.status.to_string());
                out!("{asked} -> {status}");
            }
            Err(GovernError::Pending { execution_id }) => {
                out!("{asked} -> PENDING {execution_id}: approve it with the commands above");
                tokio::spawn(await_decision(governor.clone(), execution_id));
            }
            Err(e) => out!("{asked} -> DENIED {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

async fn await_decision(governor: Governor, id: agent_governor::ExecutionId) {
    let decided = governor
        .wait_for_decision(id, Duration::from_secs(4 * 3600))
        .await;
    let line = match decided.map(|e| e.status) {
        Ok(ExecutionStatus::Approved) => match governor.start_external(id).await {
            Ok(started) => {
                let output = json!({"sent": started.arguments.value()["amount"]});
                match governor.complete_external(id, Ok(output)).await {
                    Ok(e) => format!("approved transfer {id} -> {}", e.status),
                    Err(e) => format!("approved transfer {id} could not be recorded: {e}"),
                }
            }
            Err(e) => format!("approved transfer {id} could not start: {e}"),
        },
        Ok(status) => format!("transfer {id} -> {status}"),
        Err(e) => format!("transfer {id}: {e}"),
    };
    out!("{line}");
}
