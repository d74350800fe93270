//! `governor pause`, `governor lift`, `governor pauses`: the kill switch.
//!
//! Whoever can write the database file can already change it, so the CLI
//! acts with that authority: the operator named by `--as` is given the
//! `governor:pause` permission and recorded in the audit log.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_governor::{Governor, PAUSE_PERMISSION, PauseMode, Principal};
use clap::{Args, ValueEnum};

use crate::executions::open;
use crate::output::{table, time};

/// What to pause and how.
#[derive(Args)]
pub(crate) struct PauseArgs {
    /// The action to pause (default: every action).
    #[arg(long)]
    action: Option<String>,
    /// Deny new calls, or hold them for resume workers after the lift.
    #[arg(long, value_enum, default_value_t = Mode::Deny)]
    mode: Mode,
    #[command(flatten)]
    by: Operator,
}

/// What to lift.
#[derive(Args)]
pub(crate) struct LiftArgs {
    /// The paused action (default: the pause of every action).
    #[arg(long)]
    action: Option<String>,
    #[command(flatten)]
    by: Operator,
}

/// Who acts, why, and on which database.
#[derive(Args)]
pub(crate) struct Operator {
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: String,
    /// The operator's id (recorded in the audit log).
    #[arg(long = "as")]
    operator: String,
    /// The SQLite database.
    #[arg(long, env = "GOVERNOR_DB", default_value = "governor.db")]
    db: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Deny,
    Hold,
}

async fn governor(db: &std::path::Path) -> anyhow::Result<Governor> {
    Ok(Governor::builder().store(open(db).await?).build()?)
}

fn operator(id: &str) -> Principal {
    Principal::new(id).with_permissions([PAUSE_PERMISSION])
}

pub(crate) async fn pause(args: PauseArgs) -> anyhow::Result<ExitCode> {
    let g = governor(&args.by.db).await?;
    let mode = match args.mode {
        Mode::Deny => PauseMode::Deny,
        Mode::Hold => PauseMode::Hold,
    };
    let p = g
        .pause(
            args.action.as_deref(),
            mode,
            &operator(&args.by.operator),
            &args.by.reason,
        )
        .await?;
    crate::write_stdout(&format!(
        "paused {} ({:?}) by {}",
        p.action.as_deref().unwrap_or("every action"),
        p.mode,
        p.by
    ));
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn lift(args: LiftArgs) -> anyhow::Result<ExitCode> {
    let g = governor(&args.by.db).await?;
    let what = args.action.as_deref().unwrap_or("every action");
    if g.lift(
        args.action.as_deref(),
        &operator(&args.by.operator),
        &args.by.reason,
    )
    .await?
    {
        crate::write_stdout(&format!("lifted the pause of {what}"));
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{what} was not paused");
        Ok(ExitCode::from(1))
    }
}

pub(crate) async fn list(db: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let pauses = governor(&db).await?.pauses().await?;
    if json {
        crate::write_stdout(&serde_json::to_string_pretty(&pauses)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = pauses
        .iter()
        .map(|p| {
            vec![
                p.action.clone().unwrap_or_else(|| "*".into()),
                format!("{:?}", p.mode).to_lowercase(),
                p.by.clone(),
                time(p.since),
                p.reason.clone(),
            ]
        })
        .collect();
    table(&["ACTION", "MODE", "BY", "SINCE", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}
