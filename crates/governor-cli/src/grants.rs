//! `governor grants list|revoke`, through a running server.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use crate::approvals::encode;
use crate::output::{table, text};
use crate::remote::{Remote, RemoteArgs};

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Standing grants in force that you may see, oldest first.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Only grants for this action.
        #[arg(long)]
        action: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant: the calls it covered ask again (audited).
    Revoke {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The grant id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List {
            remote,
            action,
            json,
        } => {
            let mut path = "/govern/grants?limit=10000".to_owned();
            if let Some(a) = action {
                path.push_str(&format!("&action={}", encode(&a)));
            }
            let grants = Remote::new(remote)?.get(&path).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&grants)?);
            } else {
                list(&grants);
            }
        }
        Command::Revoke {
            remote,
            id,
            reason,
            json,
        } => {
            let path = format!("/govern/grants/{}?reason={}", encode(&id), encode(&reason));
            let grant = Remote::new(remote)?.delete(&path).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&grant)?);
            } else {
                out!(
                    "grant {} revoked: `{}` asks again for {}",
                    text(&grant["id"]),
                    text(&grant["principal"]),
                    text(&grant["action"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(grants: &Value) {
    let items = grants.as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|g| {
            vec![
                text(&g["id"]),
                text(&g["action"]),
                text(&g["principal"]),
                text(&g["policy"]),
                text(&g["granted_by"]),
                text(&g["until"]),
                if g["arguments"].is_null() {
                    "any".to_owned()
                } else {
                    g["arguments"].to_string()
                },
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ACTION",
            "PRINCIPAL",
            "POLICY",
            "GRANTED BY",
            "UNTIL",
            "ARGUMENTS",
        ],
        &rows,
    );
    if items.is_empty() {
        out!("(no grants in force)");
    }
}
