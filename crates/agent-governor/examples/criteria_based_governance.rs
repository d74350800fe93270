//! Criteria-based governance: the seed's nine patterns of conditional
//! governance, each as a governed function.
//!
//! Run: `cargo run -p agent-governor --example criteria_based_governance`

use std::sync::Arc;

use agent_governor::prelude::*;
use agent_governor::{Decision, Denial, Policy, PolicyContext, policy_fn};
use chrono::Timelike;
use serde_json::{Value, json};

fn amount(ctx: &PolicyContext<'_>) -> f64 {
    ctx.input["amount"].as_f64().unwrap_or(0.0)
}

// 1. Threshold-based: small passes, medium needs a manager, large the CFO.
#[govern(policies = [
    ApprovalPolicy::new(["manager@company.com"]).named("ManagerApproval")
        .auto_approve_when(|i, _| i["amount"].as_f64().is_some_and(|a| !(1_000.0..10_000.0).contains(&a))),
    ApprovalPolicy::new(["cfo@company.com"]).named("CfoApproval")
        .auto_approve_when(|i, _| i["amount"].as_f64().is_some_and(|a| a < 10_000.0)),
])]
async fn threshold_payment(amount: f64) -> Value {
    json!({"paid": amount})
}

// 2. Environment-based: stricter in production.
fn environment_policies(env: &str) -> Vec<Arc<dyn Policy>> {
    match env {
        "production" => vec![
            AuthorizationPolicy::new().require_roles(["sre"]).boxed(),
            ApprovalPolicy::new(["sre-lead@company.com"]).boxed(),
        ],
        _ => vec![AuditPolicy::new().compliance_tags(["development"]).boxed()],
    }
}

#[govern(policies = environment_policies("development"))]
async fn deploy_dev(service: String) -> String {
    format!("deployed {service} to development")
}

#[govern(policies = environment_policies("production"))]
async fn deploy_prod(service: String) -> String {
    format!("deployed {service} to production")
}

// 3. Risk-based: a risk score from several inputs decides.
fn risk_score(ctx: &PolicyContext<'_>) -> u32 {
    let mut score = 0;
    if amount(ctx) > 5_000.0 {
        score += 40;
    }
    if ctx.input["country"] != "DE" {
        score += 30;
    }
    if ctx.input["new_recipient"] == true {
        score += 30;
    }
    score
}

#[govern(policies = [policy_fn("risk_score", |ctx| match risk_score(ctx) {
    0..=39 => Decision::Allow,
    40..=69 => Decision::Warn(format!("medium risk ({})", risk_score(ctx))),
    s => Decision::Deny(Denial::new(format!("risk score {s} is too high")).rule("max_risk")),
})])]
async fn risky_transfer(amount: f64, country: String, new_recipient: bool) -> Value {
    json!({"sent": amount, "to": country, "new": new_recipient})
}

// 4. Time-based: large trades only in business hours (the hour is an
//    argument here so the example is deterministic).
#[govern(policies = [policy_fn("business_hours", |ctx| {
    let hour = ctx.input["hour"].as_u64().unwrap_or(0);
    if (9..17).contains(&hour) || amount(ctx) < 1_000.0 { Decision::Allow } else { Decision::deny("large trades only 09:00-17:00") }
})])]
async fn trade(amount: f64, hour: u32) -> Value {
    json!({"traded": amount, "at_hour": hour})
}

// 5. Multi-criteria decision tree over role, amount and department.
#[govern(policies = [
    AuthorizationPolicy::new()
        .condition("same_department", |c| c.lookup("principal.attributes.department") == c.lookup("input.department"))
        .condition("within_role_limit", |c| {
            let limit = if c.principal.has_role("director") { 100_000.0 } else { 5_000.0 };
            amount(c) <= limit
        }),
])]
async fn approve_budget(amount: f64, department: String) -> Value {
    json!({"budget": amount, "department": department})
}

// 6. Dynamic policy selection: the policy list is chosen from the data.
fn policies_for(kind: &str) -> Vec<Arc<dyn Policy>> {
    let mut p: Vec<Arc<dyn Policy>> = vec![AuditPolicy::new().sensitive_fields(["card"]).boxed()];
    if kind == "refund" {
        p.push(ApprovalPolicy::new(["support-lead@company.com"]).boxed());
    }
    p
}

#[govern(policies = policies_for("purchase"))]
async fn purchase(card: String, amount: f64) -> Value {
    json!({"charged": amount, "card": card})
}

#[govern(policies = policies_for("refund"))]
async fn refund(card: String, amount: f64) -> Value {
    json!({"refunded": amount, "card": card})
}

// 7-9. Additive, layered and composite: several independent checks that
//      must all pass, then a human.
#[govern(policies = [
    ValidationPolicy::new().input_validator(|i: &Value| i["amount"].as_f64().is_some_and(|a| a > 0.0)),
    AuthorizationPolicy::new().require_roles(["treasury"]),
    policy_fn("sanctions_list", |ctx| if ctx.input["recipient"] == "Sanctioned Ltd" { Decision::deny("recipient is sanctioned") } else { Decision::Allow }),
    policy_fn("daily_cap", |ctx| if amount(ctx) > 250_000.0 { Decision::deny("above the daily cap") } else { Decision::Allow }),
    ApprovalPolicy::new(["cfo@company.com"]),
])]
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
    show("low risk", &risky_transfer(100.0, "DE".into(), false).await);
    show(
        "medium risk (warning recorded)",
        &risky_transfer(9_000.0, "DE".into(), false).await,
    );
    let high = risky_transfer(9_000.0, "XX".into(), true).await;
    show("high risk", &high);
    assert!(matches!(high, Err(GovernError::Denied { .. })));

    println!("4. time of day (now {:02}h)", chrono::Local::now().hour());
    show("large trade at 10h", &trade(5_000.0, 10).await);
    let night = trade(5_000.0, 23).await;
    show("large trade at 23h", &night);
    assert!(night.is_err());

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
