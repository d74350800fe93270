//! Basic governance: `#[govern]` with and without policies, events, and
//! reading the record back.
//!
//! Run: `cargo run -p agent-governor --example basic_usage`

use std::time::Duration;

use agent_governor::prelude::*;
use agent_governor::{EventKind, sqlite::SqliteStore};
use serde_json::{Value, json};

#[govern]
async fn process_data(data: Value) -> Value {
    json!({"processed": true, "data": data})
}

#[govern(policies = [
    ValidationPolicy::new().input_validator(|i: &Value| i["amount"].as_f64().is_some_and(|a| a > 0.0)),
    AuthorizationPolicy::new().require_roles(["admin", "finance"]),
    RateLimitPolicy::new(10, Duration::from_secs(60)).per_principal(),
    AuditPolicy::new().sensitive_fields(["account"]).compliance_tags(["SOC2", "financial"]),
])]
async fn process_payment(amount: f64, account: String) -> Value {
    json!({"status": "success", "amount": amount})
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A durable store: one SQLite file. Without this, `#[govern]` records
    // into an in-memory store.
    let dir = std::env::temp_dir().join(format!("governor-basic-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(dir.join("governor.db")).await?;
    Governor::set_global(Governor::builder().store(store).build()?)
        .map_err(|_| "global governor already set")?;

    let violations = Governor::global().events().subscribe();
    Governor::global()
        .events()
        .on(EventKind::PolicyViolated, |e| {
            println!("  [event] policy violated: {}", e.data)
        })?;

    println!(
        "1. no policies: {}",
        process_data(json!({"key": "value"})).await?
    );

    let finance = Principal::new("agent-7").with_roles(["finance"]);
    let paid = finance
        .clone()
        .scope(process_payment(250.0, "DE1234".into()))
        .await?;
    println!("2. authorized payment: {paid}");

    match finance
        .clone()
        .scope(process_payment(-5.0, "DE1234".into()))
        .await
    {
        Err(err) => println!("3. invalid amount: {err}"),
        Ok(v) => return Err(format!("a negative amount was accepted: {v}").into()),
    }

    match Principal::new("intern")
        .scope(process_payment(10.0, "DE1234".into()))
        .await
    {
        Err(err) => println!("4. wrong role: {err}"),
        Ok(v) => return Err(format!("an intern was allowed to pay: {v}").into()),
    }

    let records = Governor::global()
        .store()
        .executions(&Default::default())
        .await?;
    println!("\n{} executions recorded:", records.len());
    for e in records.iter().rev() {
        println!(
            "  {} {:<15} {:<10} inputs={}",
            e.id,
            e.action,
            e.status.as_str(),
            e.inputs
        );
    }
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|e| !e.inputs.as_str().contains("DE1234")),
        "account numbers are redacted"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(violations);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
