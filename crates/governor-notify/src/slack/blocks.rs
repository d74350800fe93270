//! Block Kit messages: the same facts as the email ([`Brief`]), with
//! Approve and Reject buttons while the request waits, and the outcome
//! once it does not.

use governor_core::{Brief, Execution, ExecutionStatus};
use serde_json::{Value, json};

/// The buttons' `action_id`s.
pub(crate) const APPROVE: &str = "governor.approve";
pub(crate) const REJECT: &str = "governor.reject";

/// Text safe inside Slack `mrkdwn` (its three control characters).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Plain text cut to Slack's limit for a field (`max` characters).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// What a button carries: the execution, the stage and the digest the
/// message showed, so that a click decides only what was seen.
pub(crate) fn button_value(execution: &Execution) -> String {
    let request = execution.approval.as_ref();
    let stage = request
        .and_then(|r| r.current_stage())
        .map_or(0, |(i, _)| i);
    let digest = request.and_then(|r| r.digest.clone()).unwrap_or_default();
    format!("{}|{stage}|{digest}", execution.id)
}

fn header(brief: &Brief) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": cut(&brief.title, 150), "emoji": false}})
}

fn context(execution: &Execution, console: Option<&str>) -> Value {
    let link = console.map_or_else(String::new, |base| {
        format!(
            " · <{}/dashboard/#/pending/{}|open in the console>",
            base.trim_end_matches('/'),
            execution.id
        )
    });
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Execution `{}`{link}", execution.id)}]})
}

/// The request message: (fallback text, blocks).
pub(crate) fn request(
    execution: &Execution,
    brief: &Brief,
    console: Option<&str>,
) -> (String, Value) {
    let mut about = format!(
        "*{}* asks to run `{}`",
        esc(&brief.requester),
        esc(&brief.action)
    );
    if let Some(stage) = &brief.stage {
        about.push_str(&format!(
            "\nRule *{}*: {}",
            esc(&stage.label()),
            esc(&stage.reason)
        ));
        if let Some(why) = &stage.why {
            about.push_str(&format!("\n{}", esc(why)));
        }
        if stage.quorum > 1 {
            about.push_str(&format!(
                "\n{} of {} approvals so far",
                stage.approvals, stage.quorum
            ));
        }
        if let Some(at) = stage.expires_at {
            about.push_str(&format!("\nExpires {}", at.format("%Y-%m-%d %H:%M UTC")));
        }
    }
    if let Some(effect) = &brief.on_approve {
        about.push_str(&format!("\n*Approving: {}.*", esc(effect)));
    }
    if brief.edited {
        about.push_str("\n_An approver edited the arguments: these will run._");
    }
    let fields: Vec<Value> = brief
        .rows
        .iter()
        .take(10)
        .map(|(k, v)| json!({"type": "mrkdwn", "text": cut(&format!("*{}*\n{}", esc(k), esc(v)), 2000)}))
        .collect();
    let value = button_value(execution);
    let mut blocks = vec![
        header(brief),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&about, 3000)}}),
    ];
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    blocks.push(
        json!({"type": "actions", "block_id": "governor", "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Reject"}},
        ]}),
    );
    blocks.push(context(execution, console));
    let text = format!("Approval needed: {}", brief.title);
    (text, Value::Array(blocks))
}

/// The message as it stands after a change: the outcome, no buttons.
pub(crate) fn status(
    execution: &Execution,
    brief: &Brief,
    console: Option<&str>,
) -> (String, Value) {
    let last = execution.approval.as_ref().and_then(|r| {
        r.stages
            .iter()
            .flat_map(|s| s.decisions.iter())
            .rfind(|d| !d.superseded)
    });
    let by = last
        .map(|d| {
            format!(
                " by {}{}",
                esc(&d.approver),
                d.reason
                    .as_deref()
                    .map(|r| format!(": “{}”", esc(r)))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let outcome = match execution.status {
        ExecutionStatus::Rejected => format!(":x: *Rejected*{by}"),
        ExecutionStatus::Expired => ":hourglass: *Expired*: nobody decided in time".to_owned(),
        ExecutionStatus::AwaitingApproval => match &brief.stage {
            Some(s) => format!(
                ":arrow_right: Decided{by}; now waiting on {} (asked in a new message)",
                esc(&s.label())
            ),
            None => "Waiting".to_owned(),
        },
        ExecutionStatus::Approved | ExecutionStatus::Running | ExecutionStatus::Completed => {
            format!(":white_check_mark: *Approved*{by}")
        }
        other => format!("*{other}*{by}"),
    };
    let text = format!("{}: {}", brief.title, execution.status);
    let blocks = json!([
        header(brief),
        {"type": "section", "text": {"type": "mrkdwn", "text": cut(&outcome, 3000)}},
        context(execution, console),
    ]);
    (text, blocks)
}

/// A reminder, posted in the request's thread.
pub(crate) fn reminder(brief: &Brief) -> String {
    let when = brief
        .stage
        .as_ref()
        .and_then(|s| s.expires_at)
        .map(|at| format!(" before {}", at.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    format!(
        "Reminder: {} still needs a decision{when}.",
        esc(&brief.title)
    )
}
