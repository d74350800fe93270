//! `governor approvals list|approve|reject`, through a running server.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::output::table;
use crate::remote::{Remote, RemoteArgs};

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Approval requests waiting that you may see, newest first.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Only this action.
        #[arg(long)]
        action: Option<String>,
        /// Only those you can decide now.
        #[arg(long)]
        mine: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve the waiting stage of an execution.
    Approve {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The execution id.
        id: String,
        /// Why (some policies require it).
        #[arg(long)]
        reason: Option<String>,
        /// Run with these arguments instead (a JSON object).
        #[arg(long)]
        edits: Option<String>,
        /// Also approve the requester's later calls for this many seconds.
        #[arg(long)]
        grant_seconds: Option<u64>,
        /// With --grant-seconds: only for the same arguments.
        #[arg(long, requires = "grant_seconds")]
        same_arguments: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject an execution; the reason reaches the caller.
    Reject {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The execution id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
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
            mine,
            limit,
            json,
        } => {
            let mut path = format!("/govern/approvals/pending?limit={limit}");
            if mine {
                path.push_str("&decidable=true");
            }
            if let Some(a) = action {
                path.push_str(&format!("&action={}", encode(&a)));
            }
            let page = Remote::new(remote)?.get(&path).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                list(&page);
            }
        }
        Command::Approve {
            remote,
            id,
            reason,
            edits,
            grant_seconds,
            same_arguments,
            json,
        } => {
            let mut body = json!({ "reason": reason });
            if let Some(e) = edits {
                body["edits"] =
                    serde_json::from_str(&e).context("--edits must be a JSON object")?;
            }
            if let Some(window) = grant_seconds {
                body["grant"] = json!({"window_seconds": window, "same_arguments": same_arguments});
            }
            let path = format!("/govern/approvals/{}/approve", encode(&id));
            let view = Remote::new(remote)?.post(&path, &body).await?;
            decided(&view, json)?;
        }
        Command::Reject {
            remote,
            id,
            reason,
            json,
        } => {
            let path = format!("/govern/approvals/{}/reject", encode(&id));
            let view = Remote::new(remote)?
                .post(&path, &json!({ "reason": reason }))
                .await?;
            decided(&view, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(page: &Value) {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let stage = &i["stage"];
            vec![
                text(&i["execution_id"]),
                text(&i["action"]),
                text(&i["requester"]),
                age(&i["requested_at"]),
                text(&stage["policy"]),
                stage["approvers"]
                    .as_array()
                    .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
                if i["can_decide"] == true { "yes" } else { "no" }.into(),
                i["inputs"].to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ACTION",
            "REQUESTER",
            "AGE",
            "POLICY",
            "APPROVERS",
            "YOURS",
            "INPUTS",
        ],
        &rows,
    );
    if items.is_empty() {
        out!("(no approvals waiting)");
    }
}

fn decided(view: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(view)?);
    } else {
        out!(
            "{} {} is now {}",
            text(&view["action"]),
            text(&view["execution_id"]),
            text(&view["status"])
        );
    }
    Ok(())
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn age(v: &Value) -> String {
    let Some(at) = v.as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()) else {
        return "-".into();
    };
    let secs = (Utc::now() - at).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Percent-encodes a path or query component.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
