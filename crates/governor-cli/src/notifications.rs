//! `governor notifications list|retry`, through a running server: the
//! outbox of notices to approvers, webhooks and channels.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::approvals::encode;
use crate::output::{clean, table, text};
use crate::remote::{Remote, RemoteArgs};

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Notifications, oldest first: every one (governor:read), or those
    /// about one execution you may see.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Only those in this state: pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        /// Only those about this execution.
        #[arg(long)]
        execution: Option<String>,
        /// At most this many (at most 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a dead notification again (governor:resume).
    Retry {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The notification id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List {
            remote,
            state,
            execution,
            limit,
            json,
        } => {
            let mut path = format!("/govern/notifications?limit={limit}");
            if let Some(s) = state {
                path.push_str(&format!("&state={}", encode(&s)));
            }
            if let Some(e) = execution {
                path.push_str(&format!("&execution_id={}", encode(&e)));
            }
            let page = Remote::new(remote)?.get(&path).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                list(&page);
            }
        }
        Command::Retry { remote, id, json } => {
            let path = format!("/govern/notifications/{}/retry", encode(&id));
            let n = Remote::new(remote)?.post(&path, &json!({})).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&n)?);
            } else {
                out!(
                    "notification {} to {} is {} again: it is delivered next",
                    text(&n["id"]),
                    text(&n["target"]),
                    text(&n["state"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(page: &Value) {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|n| {
            vec![
                text(&n["id"]),
                text(&n["execution_id"]),
                text(&n["kind"]),
                text(&n["target"]),
                n["recipient"].as_str().map(clean).unwrap_or_default(),
                text(&n["state"]),
                text(&n["attempts"]),
                n["last_error"].as_str().map(clean).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "EXECUTION",
            "KIND",
            "TARGET",
            "TO",
            "STATE",
            "ATTEMPTS",
            "LAST ERROR",
        ],
        &rows,
    );
    if items.is_empty() {
        out!("(no notifications)");
    }
}
