//! `governor policy check` and `governor policy explain`.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_governor::config::LoadedPolicy;
use agent_governor::policy::PolicyContext;
use agent_governor::{Condition, Decision, ExecutionId, PolicyFile, PolicyPhase, Principal};
use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Validate policy files and show which actions each policy governs;
    /// exits 1 if any file has an error.
    Check {
        /// YAML or JSON policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also list the policies that govern this action (repeatable).
        #[arg(long = "action")]
        actions: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what each policy of a file decides about one call, and why.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// The action's name.
        #[arg(long)]
        action: String,
        /// The call's arguments, a JSON object (`{"amount": 5000}`).
        #[arg(long, default_value = "{}")]
        input: String,
        /// The caller, a JSON principal (`{"id": "ann", "roles": ["finance"]}`).
        #[arg(long, default_value = r#"{"id": "anonymous"}"#)]
        principal: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check {
            files,
            actions,
            json,
        } => Ok(check(&files, &actions, json)),
        Command::Explain {
            file,
            action,
            input,
            principal,
            json,
        } => explain(&file, &action, &input, &principal, json).await,
    }
}

fn selector_text(e: &LoadedPolicy) -> String {
    e.actions
        .as_ref()
        .map_or_else(|| "every action".to_owned(), |s| s.to_string())
}

fn entry_json(e: &LoadedPolicy) -> Value {
    json!({
        "name": e.name,
        "type": e.kind.as_str(),
        "phase": e.policy.phase().as_str(),
        "enabled": e.enabled,
        "shadow": e.policy.is_shadow(),
        "actions": e.actions.as_ref().map(|s| s.patterns().to_vec()),
        "when": e.when,
        "description": e.description,
        "warnings": e.warnings,
    })
}

fn check(files: &[PathBuf], actions: &[String], json: bool) -> ExitCode {
    let mut failed = false;
    let mut report = Vec::new();
    for file in files {
        match PolicyFile::load(file) {
            Ok(loaded) => {
                if !json {
                    print_check(file, &loaded, actions);
                }
                let entries: Vec<_> = loaded.entries.iter().map(entry_json).collect();
                let governs: serde_json::Map<String, Value> = actions
                    .iter()
                    .map(|a| (a.clone(), json!(applying(&loaded, a))))
                    .collect();
                report.push(json!({
                    "file": file, "ok": true, "environment": loaded.environment,
                    "policies": entries, "actions": governs, "metadata": loaded.metadata,
                }));
            }
            Err(e) => {
                failed = true;
                if !json {
                    eprintln!("error: {e}");
                }
                report.push(json!({"file": file, "ok": false, "error": e.to_string(), "line": e.line, "column": e.column}));
            }
        }
    }
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn applying<'a>(file: &'a PolicyFile, action: &str) -> Vec<&'a str> {
    file.entries
        .iter()
        .filter(|e| e.applies_to(action))
        .map(|e| e.name.as_str())
        .collect()
}

fn print_check(file: &std::path::Path, loaded: &PolicyFile, actions: &[String]) {
    out!(
        "{}: ok, {} policies (environment {})",
        file.display(),
        loaded.entries.len(),
        loaded.environment
    );
    for e in &loaded.entries {
        let state = match (e.enabled, e.policy.is_shadow()) {
            (false, _) => " (disabled)",
            (true, true) => " (shadow)",
            (true, false) => "",
        };
        let when = e
            .when
            .as_deref()
            .map(|w| format!(" when {w}"))
            .unwrap_or_default();
        out!(
            "  {:<28} {:<13} {:<15}{state}  governs {}{when}",
            e.name,
            e.kind.as_str(),
            e.policy.phase().as_str(),
            selector_text(e)
        );
        for w in &e.warnings {
            out!("    warning: {w}");
        }
    }
    for a in actions {
        let names = applying(loaded, a);
        let list = if names.is_empty() {
            "no policy".to_owned()
        } else {
            names.join(", ")
        };
        out!("  action {a}: {list}");
    }
}

/// One policy's answer for the explained call.
struct Explained {
    name: String,
    applies: bool,
    when: Option<(String, Result<bool, String>)>,
    outcome: &'static str,
    reason: Option<String>,
    shadow: bool,
}

async fn explain(
    file: &std::path::Path,
    action: &str,
    input: &str,
    principal: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = match PolicyFile::load(file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let input: Value = serde_json::from_str(input).context("--input is not JSON")?;
    anyhow::ensure!(
        input.is_object(),
        "--input must be a JSON object of arguments by name"
    );
    let principal: Principal = serde_json::from_str(principal)
        .context("--principal is not a JSON principal ({\"id\": ...})")?;
    let ctx = PolicyContext {
        execution_id: ExecutionId::new(),
        action,
        phase: PolicyPhase::PreExecution,
        input: &input,
        output: None,
        principal: &principal,
    };
    let mut rows = Vec::new();
    for e in &loaded.entries {
        rows.push(explain_one(e, &ctx, &loaded.environment).await);
    }
    let verdict = overall(&rows);
    if json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "policy": r.name, "applies": r.applies, "outcome": r.outcome, "reason": r.reason, "shadow": r.shadow,
                    "when": r.when.as_ref().map(|(src, v)| json!({"expression": src, "value": v.as_ref().ok(), "error": v.as_ref().err()})),
                })
            })
            .collect();
        out!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"action": action, "environment": loaded.environment, "verdict": verdict, "policies": rows})
            )?
        );
    } else {
        out!("{action} in {}: {verdict}", loaded.environment);
        for r in &rows {
            print_row(r);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain_one(e: &LoadedPolicy, ctx: &PolicyContext<'_>, env: &str) -> Explained {
    let mut row = Explained {
        name: e.name.clone(),
        applies: e.applies_to(ctx.action),
        when: None,
        outcome: "not applicable",
        reason: None,
        shadow: e.policy.is_shadow(),
    };
    if !row.applies {
        row.reason = Some(if e.enabled {
            format!("governs {}", selector_text(e))
        } else {
            "disabled".into()
        });
        return row;
    }
    if !e.policy.phase().applies_to(PolicyPhase::PreExecution) {
        row.outcome = "after the run";
        row.reason = Some("evaluated on the output after the action ran".into());
        return row;
    }
    if let Some(src) = &e.when {
        let value = Condition::compile(src, env)
            .and_then(|c| c.evaluate(ctx))
            .map_err(|err| err.to_string());
        if value == Ok(false) {
            row.outcome = "skipped";
            row.reason = Some(format!("`when` is false: {src}"));
            row.when = Some((src.clone(), value));
            return row;
        }
        row.when = Some((src.clone(), value));
    }
    let decision = e.policy.evaluate(ctx).await;
    row.outcome = decision.outcome();
    row.reason = decision.reason().map(str::to_owned);
    if let Decision::RequireApproval(spec) = &decision
        && !spec.reason.contains(&spec.approvers.join(", "))
    {
        row.reason = Some(format!(
            "{} (approvers: {})",
            spec.reason,
            spec.approvers.join(", ")
        ));
    }
    row
}

fn overall(rows: &[Explained]) -> &'static str {
    let enforced = |o: &str| rows.iter().any(|r| r.outcome == o && !r.shadow);
    if enforced("deny") {
        "denied"
    } else if enforced("require_approval") {
        "needs approval"
    } else {
        "allowed"
    }
}

fn print_row(r: &Explained) {
    let reason = r
        .reason
        .as_deref()
        .map(|x| format!(": {x}"))
        .unwrap_or_default();
    let shadow = if r.shadow {
        " (shadow: not enforced)"
    } else {
        ""
    };
    out!("  {:<28} {}{shadow}{reason}", r.name, r.outcome);
    if let Some((src, Err(e))) = &r.when {
        out!("    `when` {src} could not be evaluated, so the policy applies: {e}");
    }
}
