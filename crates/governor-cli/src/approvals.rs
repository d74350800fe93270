//! `governor approvals list|approve|reject`, through a running server.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::output::{clean, table, text};
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
    /// One approval request: what was asked, what will run (and what an
    /// approver's edits changed), its stages and decisions.
    Show {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The execution id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve the waiting stage of an execution.
    ///
    /// The request is read first and what will run is printed; the decision
    /// is sent with its digest, so it is refused (409) if an edit came in
    /// between. `--expected-digest` gives the digest of what you saw
    /// earlier (`approvals show`) instead.
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
        /// With --grant-seconds: cover calls with any arguments (the
        /// default covers only the same arguments; the policy may forbid
        /// it).
        #[arg(long, requires = "grant_seconds")]
        any_arguments: bool,
        /// The digest of what you saw (from `approvals show`).
        #[arg(long)]
        expected_digest: Option<String>,
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
        /// The digest of what you saw (from `approvals show`).
        #[arg(long)]
        expected_digest: Option<String>,
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
        Command::Show { remote, id, json } => {
            let path = format!("/govern/approvals/{}", encode(&id));
            let view = Remote::new(remote)?.get(&path).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                show(&view);
            }
        }
        Command::Approve {
            remote,
            id,
            reason,
            edits,
            grant_seconds,
            any_arguments,
            expected_digest,
            json,
        } => {
            let remote = Remote::new(remote)?;
            let digest = seen_digest(&remote, &id, expected_digest, json).await?;
            let mut body = json!({ "reason": reason, "expected_digest": digest });
            if let Some(e) = edits {
                body["edits"] =
                    serde_json::from_str(&e).context("--edits must be a JSON object")?;
            }
            if let Some(window) = grant_seconds {
                body["grant"] = json!({"window_seconds": window, "same_arguments": !any_arguments});
            }
            let path = format!("/govern/approvals/{}/approve", encode(&id));
            let view = remote.post(&path, &body).await?;
            decided(&view, json)?;
        }
        Command::Reject {
            remote,
            id,
            reason,
            expected_digest,
            json,
        } => {
            let remote = Remote::new(remote)?;
            let digest = seen_digest(&remote, &id, expected_digest, json).await?;
            let path = format!("/govern/approvals/{}/reject", encode(&id));
            let body = json!({ "reason": reason, "expected_digest": digest });
            let view = remote.post(&path, &body).await?;
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
                will_run(i),
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
            "WILL RUN",
        ],
        &rows,
    );
    if items.is_empty() {
        out!("(no approvals waiting)");
    }
}

/// What a request will run, marked when an approver edited it: the
/// action's title for it ("Wire €93,231.00 to Globex") when the action
/// declares one, else the arguments.
fn will_run(view: &Value) -> String {
    match view["title"].as_str() {
        Some(title) => edited(view, clean(title)),
        None => arguments(view),
    }
}

/// The arguments a request will run with, marked when edited.
fn arguments(view: &Value) -> String {
    let args = if view["will_run"].is_null() {
        &view["inputs"]
    } else {
        &view["will_run"]
    };
    edited(view, args.to_string())
}

fn edited(view: &Value, what: String) -> String {
    if view["edited"] == true {
        format!("{what} (edited)")
    } else {
        what
    }
}

/// Why the waiting stage asks: its condition and the values it read.
fn why(stage: &Value) -> Option<String> {
    let trigger = stage.get("trigger")?;
    let values = trigger["values"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{} = {v}", clean(k)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let asks = if trigger["unless"] == true {
        "is approved without asking only when"
    } else {
        "asks when"
    };
    Some(format!(
        "rule {} {asks} {}; here {values}",
        text(&stage["policy"]),
        text(&trigger["condition"])
    ))
}

/// The digest of what the approver saw: the one given, or the request's
/// now, after printing what it approves (unless the output is JSON).
async fn seen_digest(
    remote: &Remote,
    id: &str,
    given: Option<String>,
    json: bool,
) -> anyhow::Result<Option<String>> {
    if given.is_some() {
        return Ok(given);
    }
    let view = remote
        .get(&format!("/govern/approvals/{}", encode(id)))
        .await?;
    if !json {
        out!(
            "deciding {} {}: will run {}",
            text(&view["action"]),
            text(&view["execution_id"]),
            will_run(&view)
        );
        changes(&view);
    }
    Ok(view["digest"].as_str().map(str::to_owned))
}

/// What an approver's edits changed, argument by argument.
fn changes(view: &Value) {
    for c in view["changes"].as_array().into_iter().flatten() {
        let side = |v: &Value| {
            if v.is_null() {
                "(none)".to_owned()
            } else {
                v.to_string()
            }
        };
        out!(
            "  changed {}: {} -> {}",
            text(&c["argument"]),
            side(&c["asked"]),
            side(&c["will_run"])
        );
    }
}

fn show(view: &Value) {
    let stage = &view["stage"];
    out!("execution  {}", text(&view["execution_id"]));
    out!("action     {}", text(&view["action"]));
    out!("status     {}", text(&view["status"]));
    out!("requester  {}", text(&view["requester"]));
    if let Some(title) = view["title"].as_str() {
        out!("title      {}", clean(title));
    }
    out!("asked      {}", view["inputs"]);
    out!("will run   {}", arguments(view));
    changes(view);
    if !stage.is_null() {
        out!(
            "waiting    stage {}/{}: {} ({}/{} approvals) — {}",
            stage["index"].as_u64().unwrap_or(0) + 1,
            text(&stage["of"]),
            text(&stage["policy"]),
            text(&stage["approvals"]),
            text(&stage["quorum"]),
            text(&stage["reason"])
        );
        if let Some(why) = why(stage) {
            out!("why        {why}");
        }
    }
    let stages = view["approval"]["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, s) in stages.iter().enumerate() {
        for d in s["decisions"].as_array().into_iter().flatten() {
            out!(
                "           stage {}: {} by {}{}{}",
                i + 1,
                if d["approved"] == true {
                    "approved"
                } else {
                    "rejected"
                },
                text(&d["approver"]),
                d["reason"]
                    .as_str()
                    .map(|r| format!(": {}", clean(r)))
                    .unwrap_or_default(),
                if d["superseded"] == true {
                    " (superseded by an edit)"
                } else {
                    ""
                }
            );
        }
    }
    out!(
        "you decide {}",
        if view["can_decide"] == true {
            "yes"
        } else {
            "no"
        }
    );
    out!("digest     {}", text(&view["digest"]));
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
