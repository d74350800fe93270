//! Criteria-based governance: the seed's nine patterns of conditional
//! governance. The conditions live in a policy file
//! (`examples/criteria/criteria.yaml`, CEL over the call's inputs,
//! principal and environment), chosen per function by its name; the
//! functions only say which environment they run in.
//!
//! Run: `cargo run -p agent-governor --example criteria_based_governance`

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use agent_governor::prelude::*;
use agent_governor::{Policy, PolicyFile};
use chrono::Timelike;
use serde_json::{Value, json};

/// The example's policy files by environment, loaded once.
fn criteria(environment: &str, action: &str) -> Vec<Arc<dyn Policy>> {
    static FILES: OnceLock<HashMap<&'static str, PolicyFile>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/criteria");
        ["development", "production"]
            .into_iter()
            .map(|env| match PolicyFile::load_environment(dir, env) {
                Ok(file) => (env, file),
                Err(e) => panic!("the example's policy files do not load: {e}"),
            })
            .collect()
    });
    files[environment].policies_for(action)
}

// 1. Threshold-based: small passes, medium needs a manager, large the CFO.
#[govern(policies = criteria("development", "threshold_payment"))]
async fn threshold_payment(amount: f64) -> Value {
    json!({"paid": amount})
}

// 2. Environment-based: the same policies, stricter in production.
#[govern(policies = criteria("development", "deploy_dev"))]
async fn deploy_dev(service: String) -> String {
    format!("deployed {service} to development")
}

#[govern(policies = criteria("production", "deploy_prod"))]
async fn deploy_prod(service: String) -> String {
    format!("deployed {service} to production")
}

// 3. Risk-based: a risk score from several inputs decides.
#[govern(policies = criteria("development", "risky_transfer"))]
async fn risky_transfer(amount: f64, country: String, new_recipient: bool) -> Value {
    json!({"sent": amount, "to": country, "new": new_recipient})
}

// 4. Time-based: large trades only in business hours.
#[govern(policies = criteria("development", "trade"))]
async fn trade(amount: f64, hour: u32) -> Value {
    json!({"traded": amount, "at_hour": hour})
}

// 5. Multi-criteria decision tree over role, amount and department.
#[govern(policies = criteria("development", "approve_budget"))]
async fn approve_budget(amount: f64, department: String) -> Value {
    json!({"budget": amount, "department": department})
}

// 6. Dynamic policy selection: the file picks policies by action name.
#[govern(policies = criteria("development", "purchase"))]
async fn purchase(card: String, amount: f64) -> Value {
    json!({"charged": amount, "card": card})
}

#[govern(policies = criteria("development", "refund"))]
async fn refund(card: String, amount: f64) -> Value {
    json!({"refunded": amount, "card": card})
}

// 7-9. Additive, layered and composite: several independent checks that
//      must all pass, then a human.
#[govern(policies = criteria("development", "composite_wire"))]
async fn composite_wire(amount: f64, recipient: String) -> Value {
    json!({"wired": amount, "to": recipient})
}

fn show<T: std::fmt::Debug>(label: &str, r: &Result<T, GovernError>) {
    match r {
        Ok(v) => println!("  {label:<44} ok: {v:?}"),
        Err(GovernError::Pending { execution_id }) => {
            println!("  {label:<44} pending approval ({execution_id})")
        }
        Err(e) => println!("  {label:<44} refused: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), GovernError> {
    println!("1. threshold");
    let small = threshold_payment(500.0).await;
    show("500", &small);
    let medium = threshold_payment(5_000.0).await;
    show("5,000", &medium);
    let large = threshold_payment(50_000.0).await;
    show("50,000", &large);
    assert!(
        small.is_ok()
            && matches!(medium, Err(GovernError::Pending { .. }))
            && matches!(large, Err(GovernError::Pending { .. }))
    );

    println!("2. environment");
    let dev = deploy_dev("api".into()).await;
    show("development", &dev);
    let prod = Principal::new("dev").scope(deploy_prod("api".into())).await;
    show("production, no sre role", &prod);
    assert!(dev.is_ok() && matches!(prod, Err(GovernError::Denied { .. })));

    println!("3. risk");
    let agent = Principal::new("agent-7");
    let low = agent
        .clone()
        .scope(risky_transfer(100.0, "DE".into(), false))
        .await;
    show("low risk", &low);
    let medium = agent
        .clone()
        .scope(risky_transfer(9_000.0, "DE".into(), false))
        .await;
    show("medium risk (warning recorded)", &medium);
    let high = agent
        .clone()
        .scope(risky_transfer(9_000.0, "XX".into(), true))
        .await;
    show("high risk", &high);
    assert!(low.is_ok() && medium.is_ok());
    assert!(matches!(high, Err(GovernError::Denied { rule: Some(ref r), .. }) if r == "max_risk"));

    println!("4. time of day (now {:02}h)", chrono::Local::now().hour());
    let day = agent.clone().scope(trade(5_000.0, 10)).await;
    show("large trade at 10h", &day);
    let night = agent.clone().scope(trade(5_000.0, 23)).await;
    show("large trade at 23h", &night);
    assert!(day.is_ok() && night.is_err());

    println!("5. multi-criteria");
    let ops = Principal::new("olga").with_attribute("department", "ops");
    show(
        "own department, small",
        &ops.clone()
            .scope(approve_budget(1_000.0, "ops".into()))
            .await,
    );
    show(
        "other department",
        &ops.clone()
            .scope(approve_budget(1_000.0, "sales".into()))
            .await,
    );
    let big = ops
        .clone()
        .scope(approve_budget(50_000.0, "ops".into()))
        .await;
    show("above role limit", &big);
    let director = Principal::new("dora")
        .with_roles(["director"])
        .with_attribute("department", "ops");
    show(
        "director, above manager limit",
        &director.scope(approve_budget(50_000.0, "ops".into())).await,
    );
    assert!(
        matches!(big, Err(GovernError::Denied { rule: Some(ref r), .. }) if r == "within_role_limit")
    );

    println!("6. dynamic selection");
    show("purchase", &purchase("4111-1111".into(), 20.0).await);
    show("refund", &refund("4111-1111".into(), 20.0).await);

    println!("7-9. composite");
    let treasury = Principal::new("tess").with_roles(["treasury"]);
    show(
        "all checks pass, then approval",
        &treasury
            .clone()
            .scope(composite_wire(1_000.0, "Acme".into()))
            .await,
    );
    show(
        "sanctioned recipient",
        &treasury
            .clone()
            .scope(composite_wire(1_000.0, "Sanctioned Ltd".into()))
            .await,
    );
    show(
        "above daily cap",
        &treasury
            .scope(composite_wire(300_000.0, "Acme".into()))
            .await,
    );

    let all = Governor::global()
        .store()
        .executions(&Default::default())
        .await?;
    let warned = Governor::global()
        .store()
        .events(&agent_governor::store::EventQuery {
            kinds: vec![agent_governor::EventKind::PolicyFailed],
            ..Default::default()
        })
        .await?;
    println!(
        "\n{} executions recorded, {} warnings",
        all.len(),
        warned.len()
    );
    assert_eq!(warned.len(), 1);
    Ok(())
}
