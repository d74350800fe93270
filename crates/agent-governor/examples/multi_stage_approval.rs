//! Sequential approvals: AI safety, then security, then an executive, each
//! with its own approvers; every stage's decision is recorded separately.
//!
//! Run: `cargo run -p agent-governor --example multi_stage_approval`

use agent_governor::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let governor = Governor::builder().build()?;
    let deploy = governor
        .action("deploy_ai_model")
        .policy(
            ApprovalPolicy::new(["ai-safety@company.com"])
                .named("AI Safety Team")
                .require_reason(true),
        )
        .policy(ApprovalPolicy::new(["security@company.com"]).named("Security Team"))
        .policy(
            ApprovalPolicy::new(["cto@company.com", "ceo@company.com"])
                .named("Executive Team")
                .quorum(2, true),
        )
        .build()?;

    let id = match deploy
        .run(
            Args::new()
                .arg("model_name", "gpt-custom")
                .arg("version", "2.0"),
            || async { Ok::<_, GovernError>("deployed".to_string()) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => return Err(format!("expected a ticket, got {other:?}").into()),
    };

    let person = |id: &str, email: &str| Principal::new(id).with_attribute("email", email);
    let steps = [
        (
            person("sam", "ai-safety@company.com"),
            Some("bias evaluation passed"),
        ),
        (person("sec", "security@company.com"), None),
        (person("cto", "cto@company.com"), None),
        (person("ceo", "ceo@company.com"), Some("go")),
    ];
    for (approver, reason) in &steps {
        let e = governor.approve(id, approver, *reason).await?;
        let request = e.approval.as_ref().ok_or("no request")?;
        let stage = request
            .current_stage()
            .map(|(i, s)| format!("stage {} ({})", i + 1, s.spec.policy));
        println!(
            "{:<4} approved -> {:?}, waiting on {}",
            approver.id,
            e.status,
            stage.unwrap_or_else(|| "nothing".into())
        );
    }
    let e = governor.execution(id).await?.ok_or("missing")?;
    assert_eq!(e.status, ExecutionStatus::Approved);
    for (i, stage) in e.approval.ok_or("no request")?.stages.iter().enumerate() {
        let who: Vec<&str> = stage
            .decisions
            .iter()
            .map(|d| d.approver.as_str())
            .collect();
        println!(
            "stage {} {:<15} decided by {who:?}",
            i + 1,
            stage.spec.policy
        );
    }
    Ok(())
}
