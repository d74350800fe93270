//! `governor policy check`.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_governor::PolicyFile;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Validate policy files; exits 1 if any has an error.
    Check {
        /// YAML or JSON policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Check { files, json } = command;
    let mut failed = false;
    let mut report = Vec::new();
    for file in &files {
        match PolicyFile::load(file) {
            Ok(loaded) => {
                let entries: Vec<_> = loaded
                    .entries
                    .iter()
                    .map(|e| {
                        json!({
                            "name": e.name,
                            "type": e.kind.as_str(),
                            "phase": e.policy.phase().as_str(),
                            "enabled": e.enabled,
                            "shadow": e.policy.is_shadow(),
                            "description": e.description,
                            "warnings": e.warnings,
                        })
                    })
                    .collect();
                if !json {
                    out!("{}: ok, {} policies", file.display(), loaded.entries.len());
                    for e in &loaded.entries {
                        let state = if e.enabled { "" } else { " (disabled)" };
                        out!(
                            "  {:<28} {:<13} {:<15}{state}  applies to every action it is attached to",
                            e.name,
                            e.kind.as_str(),
                            e.policy.phase().as_str()
                        );
                        for w in &e.warnings {
                            out!("    warning: {w}");
                        }
                    }
                }
                report.push(json!({"file": file, "ok": true, "policies": entries, "metadata": loaded.metadata}));
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
        out!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
