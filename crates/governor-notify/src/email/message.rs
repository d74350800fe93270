//! The emails themselves: a plain-text part and an HTML part telling the
//! same facts (the request's [`Brief`]), with the links.

use std::fmt::Write as _;

use chrono::Utc;
use governor_core::display::escape_html as esc;
use governor_core::{
    ApprovalLink, Brief, Execution, ExecutionStatus, Governor, LINK_MAX_AGE, LinkMode, Notice,
    Notification, NotificationKind, Verdict,
};
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

/// One email, before it is addressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    /// The subject.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// The notification it tells (its `Message-ID`).
    pub notification: uuid::Uuid,
    /// The execution it is about.
    pub execution: governor_core::ExecutionId,
}

impl Email {
    /// The message from `from` to `to`.
    pub fn into_message(self, from: Mailbox, to: Mailbox) -> Result<Message, lettre::error::Error> {
        let mut message = Message::builder()
            .from(from)
            .to(to)
            .subject(self.subject)
            // The same id on every retry: the idempotency key.
            .message_id(Some(format!("<{}@governor>", self.notification)))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(self.text, self.html))?;
        let headers = message.headers_mut();
        for (name, value) in [
            ("X-Governor-Execution", self.execution.to_string()),
            ("X-Governor-Notification", self.notification.to_string()),
            // Mail robots (vacation replies) leave it alone.
            ("Auto-Submitted", "auto-generated".to_owned()),
        ] {
            headers.insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str(name),
                value,
            ));
        }
        Ok(message)
    }
}

/// The links an approval email carries.
enum Links {
    /// Approve and reject, each deciding once after a confirmation.
    Decide { approve: String, reject: String },
    /// The console, where the approver signs in.
    Console,
    /// Nothing to decide: for someone told about the request.
    Inform,
}

/// The email asking `address` (listed as `entry`) to decide, or, without
/// an entry, telling someone the policy informs.
pub(super) fn request(
    governor: &Governor,
    public_url: &str,
    notification: &Notification,
    execution: &Execution,
    brief: &Brief,
    entry: Option<&str>,
    address: &str,
) -> Email {
    let base = public_url.trim_end_matches('/');
    let console = format!("{base}/dashboard/#/pending/{}", execution.id);
    let links =
        match entry {
            None => Links::Inform,
            Some(entry) => decision_links(governor, notification, execution, entry, address)
                .map_or(Links::Console, |(approve, reject)| Links::Decide {
                    approve: format!("{base}/links/{approve}"),
                    reject: format!("{base}/links/{reject}"),
                }),
        };
    let prefix = match (notification.kind, entry) {
        (_, None) => "For your information: approval requested",
        (NotificationKind::Reminder, _) => "Reminder: approval needed",
        (NotificationKind::Escalated, _) => "Escalated: approval needed",
        _ => "Approval needed",
    };
    let subject = format!("{prefix}: {}", brief.title);

    let mut text = format!(
        "{} asks to run {}:\n\n    {}\n\n",
        brief.requester, brief.action, brief.title
    );
    facts_text(&mut text, brief);
    let mut html = format!(
        "<p style=\"color:#667085\">{} asks to run <code>{}</code></p><h2 style=\"font-size:20px\">{}</h2>",
        esc(&brief.requester),
        esc(&brief.action),
        esc(&brief.title)
    );
    facts_html(&mut html, brief);
    match &links {
        Links::Decide { approve, reject } => {
            let _ = write!(
                text,
                "\nApprove: {approve}\nReject:  {reject}\n\n\
                 Each link opens a page where you confirm; it works once and only for you \
                 ({address}). Anyone holding this email can use it: do not forward it.\n"
            );
            let _ = write!(
                html,
                "<p><a href=\"{}\" style=\"{BUTTON}background:#18794e;color:#fff\">Approve…</a> \
                 <a href=\"{}\" style=\"{BUTTON}background:#fff;color:#c4320a;border:1px solid #c4320a\">Reject…</a></p>\
                 <p style=\"color:#667085;font-size:13px\">Each link opens a page where you confirm; it works once and only for you ({}). \
                 Anyone holding this email can use it: do not forward it.</p>",
                esc(approve),
                esc(reject),
                esc(address)
            );
        }
        Links::Inform => {
            let approvers = brief
                .stage
                .as_ref()
                .map(|s| s.approvers.join(", "))
                .unwrap_or_default();
            let _ = write!(
                text,
                "\nYou are told about this request; {approvers} decide it.\n"
            );
            let _ = write!(
                html,
                "<p>You are told about this request; {} decide it.</p>",
                esc(&approvers)
            );
        }
        Links::Console => {
            let _ = write!(text, "\nSign in to decide: {console}\n");
            let _ = write!(
                html,
                "<p><a href=\"{}\" style=\"{BUTTON}background:#2a5bd7;color:#fff\">Sign in to decide</a></p>",
                esc(&console)
            );
        }
    }
    let _ = write!(text, "\nExecution {} · {console}\n", execution.id);
    let _ = write!(
        html,
        "<p style=\"color:#667085;font-size:13px\">Execution <code>{}</code> · <a href=\"{}\">open in the console</a></p>",
        execution.id,
        esc(&console)
    );
    Email {
        subject,
        text,
        html: wrap(&html),
        notification: notification.id,
        execution: execution.id,
    }
}

/// The email telling the requester how their request ended.
pub(super) fn outcome(
    public_url: &str,
    notification: &Notification,
    notice: &Notice,
    brief: &Brief,
    execution: &Execution,
) -> Email {
    let base = public_url.trim_end_matches('/');
    let outcome = match notice.status {
        ExecutionStatus::Approved => "approved",
        ExecutionStatus::Rejected => "rejected",
        ExecutionStatus::Expired => "expired",
        other => other.as_str(),
    };
    let last = execution
        .approval
        .as_ref()
        .and_then(|r| r.stages.iter().flat_map(|s| s.decisions.iter()).last());
    let by = last
        .map(|d| {
            format!(
                " by {}{}",
                d.approver,
                d.reason
                    .as_deref()
                    .map(|r| format!(": “{r}”"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let subject = format!("Your request was {outcome}: {}", brief.title);
    let line = format!("{} was {outcome}{by}.", brief.title);
    let console = format!("{base}/dashboard/#/executions/{}", execution.id);
    let text = format!("{line}\n\nExecution {} · {console}\n", execution.id);
    let html = wrap(&format!(
        "<h2 style=\"font-size:20px\">{}</h2><p style=\"color:#667085;font-size:13px\">Execution <code>{}</code> · <a href=\"{}\">open in the console</a></p>",
        esc(&line),
        execution.id,
        esc(&console)
    ));
    Email {
        subject,
        text,
        html,
        notification: notification.id,
        execution: execution.id,
    }
}

/// Approve and reject tokens for `address`, when this governor signs
/// links and the policy allows them.
fn decision_links(
    governor: &Governor,
    notification: &Notification,
    execution: &Execution,
    entry: &str,
    address: &str,
) -> Option<(String, String)> {
    let request = execution.approval.as_ref()?;
    let (stage, waiting) = request.current_stage()?;
    if waiting.spec.notify.links == LinkMode::SignIn {
        return None;
    }
    let longest = Utc::now() + chrono::Duration::from_std(LINK_MAX_AGE).ok()?;
    let expires_at = waiting.expires_at.map_or(longest, |e| e.min(longest));
    let link = |verdict| {
        governor.sign_link(&ApprovalLink {
            execution_id: execution.id,
            stage,
            approver: entry.to_owned(),
            address: address.to_owned(),
            verdict,
            digest: request.digest.clone(),
            expires_at,
            notification: notification.id,
        })
    };
    Some((link(Verdict::Approve)?, link(Verdict::Reject)?))
}

/// The why, the stage, the expiry and the arguments, as text.
fn facts_text(out: &mut String, brief: &Brief) {
    if let Some(stage) = &brief.stage {
        let _ = writeln!(out, "Why:      rule {}: {}", stage.label(), stage.reason);
        if let Some(why) = &stage.why {
            let _ = writeln!(out, "          {why}");
        }
        if stage.quorum > 1 {
            let _ = writeln!(
                out,
                "Quorum:   {} of {} approvals so far",
                stage.approvals, stage.quorum
            );
        }
        if let Some(at) = stage.expires_at {
            let _ = writeln!(out, "Expires:  {}", at.format("%Y-%m-%d %H:%M UTC"));
        }
    }
    if let Some(effect) = &brief.on_approve {
        let _ = writeln!(out, "Approving: {effect}.");
    }
    if brief.edited {
        out.push_str("An approver edited the arguments: these will run.\n");
    }
    out.push_str("\nArguments:\n");
    for (name, value) in &brief.rows {
        let _ = writeln!(out, "    {name}: {value}");
    }
}

/// The same facts as HTML.
fn facts_html(out: &mut String, brief: &Brief) {
    if let Some(stage) = &brief.stage {
        let _ = write!(
            out,
            "<div style=\"background:#fffaeb;border:1px solid #fedf89;border-radius:8px;padding:4px 12px\">\
             <p><b>Why you are asked</b>: rule <b>{}</b>: {}</p>",
            esc(&stage.label()),
            esc(&stage.reason)
        );
        if let Some(why) = &stage.why {
            let _ = write!(out, "<p>{}</p>", esc(why));
        }
        if stage.quorum > 1 {
            let _ = write!(
                out,
                "<p>{} of {} approvals so far</p>",
                stage.approvals, stage.quorum
            );
        }
        if let Some(at) = stage.expires_at {
            let _ = write!(
                out,
                "<p style=\"color:#b54708\">Expires {}</p>",
                at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        out.push_str("</div>");
    }
    if let Some(effect) = &brief.on_approve {
        let _ = write!(out, "<p><b>Approving: {}.</b></p>", esc(effect));
    }
    if brief.edited {
        out.push_str(
            "<p style=\"color:#c4320a\">An approver edited the arguments: these will run.</p>",
        );
    }
    out.push_str("<table style=\"border-collapse:collapse\">");
    for (name, value) in &brief.rows {
        let _ = write!(
            out,
            "<tr><td style=\"color:#667085;padding:2px 12px 2px 0\">{}</td><td style=\"padding:2px 0\">{}</td></tr>",
            esc(name),
            esc(value)
        );
    }
    out.push_str("</table>");
}

const BUTTON: &str = "display:inline-block;padding:10px 18px;border-radius:6px;text-decoration:none;font-weight:600;";

fn wrap(body: &str) -> String {
    format!(
        "<!doctype html><html><body style=\"font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330;max-width:36rem\">{body}</body></html>"
    )
}
