//! Policies from files and values instead of code: the seed's
//! `load_policies_from_dict`, a shipped starter file with selectors and
//! CEL conditions, environment files, and what a mistake looks like.
//!
//! Run: `cargo run -p agent-governor --example policy_config_example`

use agent_governor::config::Format;
use agent_governor::prelude::*;
use agent_governor::{PolicyFile, load_policies_from_value};
use serde_json::json;

fn show(label: &str, r: &Result<(), GovernError>) {
    match r {
        Ok(()) => println!("  {label:<40} allowed"),
        Err(GovernError::Pending { execution_id }) => {
            println!("  {label:<40} waits for approval ({execution_id})")
        }
        Err(e) => println!("  {label:<40} refused: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let governor = Governor::builder().build()?;

    // 1. From an in-memory document (the seed's load_policies_from_dict).
    println!("1. from a value");
    let policies = load_policies_from_value(json!({
        "policies": [
            {"type": "authorization", "name": "Analysts", "required_roles": ["analyst"]},
            {"type": "rate_limit", "name": "TwoPerMinute", "max_calls": 2, "window_seconds": 60, "per_user": true},
        ]
    }))?;
    let report = governor.action("build_report").policies(policies).build()?;
    let analyst = Principal::new("ana").with_roles(["analyst"]);
    let mut outcomes = Vec::new();
    for i in 1..=3 {
        let r = report
            .run_as(analyst.clone(), Args::new().arg("n", &i), || async {
                Ok::<_, GovernError>(())
            })
            .await;
        show(&format!("report {i}"), &r);
        outcomes.push(r.is_ok());
    }
    assert_eq!(
        outcomes,
        [true, true, false],
        "the third call is over the limit"
    );

    // 2. A starter file: selectors choose policies by action name, CEL
    //    conditions decide when an approval applies.
    println!("2. policies/financial-services.yaml");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let file = PolicyFile::load(format!("{dir}/financial-services.yaml"))?;
    for action in ["payments.transfer", "send_newsletter"] {
        let names: Vec<_> = file
            .policies_for(action)
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        println!("  {action} is governed by [{}]", names.join(", "));
    }
    let transfer = governor
        .action("payments.transfer")
        .policies(file.policies_for("payments.transfer"))
        .build()?;
    let ann = Principal::new("ann")
        .with_roles(["finance"])
        .with_permissions(["payment.write"]);
    let pay = |who: Principal, amount: f64| {
        let transfer = transfer.clone();
        async move {
            transfer
                .run_as(
                    who,
                    Args::new()
                        .arg("amount", &amount)
                        .arg("iban", "DE02 1203 0000 0000 2020 51"),
                    || async { Ok::<_, GovernError>(()) },
                )
                .await
        }
    };
    let small = pay(ann.clone(), 250.0).await;
    show("250 by finance", &small);
    let large = pay(ann.clone(), 25_000.0).await;
    show("25,000 by finance", &large);
    let stranger = pay(Principal::new("eve"), 250.0).await;
    show("250 by someone outside finance", &stranger);
    assert!(small.is_ok());
    assert!(matches!(large, Err(GovernError::Pending { .. })));
    assert!(matches!(stranger, Err(GovernError::Denied { .. })));

    // 3. Environment files: GOVERNOR_ENV picks policies/{env}.yaml.
    println!("3. environment files");
    for env in ["development", "production"] {
        let file = PolicyFile::load_environment(dir, env)?;
        let enforced = file
            .entries
            .iter()
            .filter(|e| !e.policy.is_shadow())
            .count();
        println!(
            "  {env}: {} policies, {enforced} enforced",
            file.entries.len()
        );
    }

    // 4. Mistakes are errors with their position, never silently ignored.
    println!("4. a typo");
    let text = "policies:\n  - type: approval\n    approvers: [cfo]\n    when: input.amout > 100 && principal.rolez == []\n";
    let Err(err) = PolicyFile::parse(text, Format::Yaml) else {
        return Err("the typo was not found".into());
    };
    println!("  {err}");
    assert_eq!(err.line, Some(4));
    Ok(())
}
