//! `/links/{token}`: the page an emailed approval link opens.
//!
//! A GET only shows what the link would decide (mail scanners and link
//! previews follow links, so opening one must change nothing); the
//! approver confirms with the page's POST, giving a reason when the
//! policy asks for one. The page is plain HTML with the console's style
//! sheet and no script at all, under a Content-Security-Policy that
//! allows nothing else. A link that no longer decides (used, decided
//! elsewhere, edited since, expired, altered) says so.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor_core::{
    ApprovalError, Brief, Execution, ExecutionStatus, LinkError, OpenLink, Verdict,
};

use governor_core::display::escape_html as esc;

use crate::state::ApiState;

/// The policy the link pages carry: the console's style sheet, forms
/// posting back here, nothing else.
pub const LINK_PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `GET /links/{token}`: what the link decides, and a button to confirm.
pub(crate) async fn show(State(state): State<ApiState>, Path(token): Path<String>) -> Response {
    match state.governor.open_link(&token).await {
        Ok(open) => {
            let brief = state.governor.brief(&open.execution);
            page(StatusCode::OK, &confirmation(&open, &brief, None))
        }
        Err(e) => refusal(&e),
    }
}

/// `POST /links/{token}`: makes the decision (form field `reason`).
pub(crate) async fn decide(
    State(state): State<ApiState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let reason = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.into_owned());
    match state
        .governor
        .decide_by_link(&token, reason.as_deref())
        .await
    {
        Ok(execution) => {
            let verdict = match execution.status {
                ExecutionStatus::Rejected => "reject",
                _ => "approve",
            };
            state.metrics.count("governor_decisions_total", verdict);
            let brief = state.governor.brief(&execution);
            page(StatusCode::OK, &decided(&execution, &brief))
        }
        Err(LinkError::Decision(ApprovalError::ReasonRequired { .. })) => {
            // Show the form again, saying what is missing.
            match state.governor.open_link(&token).await {
                Ok(open) => {
                    let brief = state.governor.brief(&open.execution);
                    page(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &confirmation(&open, &brief, Some("Give a reason to decide.")),
                    )
                }
                Err(e) => refusal(&e),
            }
        }
        Err(e) => refusal(&e),
    }
}

fn confirmation(open: &OpenLink, brief: &Brief, problem: Option<&str>) -> String {
    let link = &open.link;
    let approve = link.verdict == Verdict::Approve;
    let require_reason = brief.stage.as_ref().is_some_and(|s| s.require_reason);
    let mut body = String::new();
    let verb = if approve { "Approve" } else { "Reject" };
    let _ = write!(
        body,
        "<p class=\"muted\">You are asked to decide</p><h2>{}</h2>",
        esc(&brief.title)
    );
    describe(&mut body, brief, &open.execution);
    let effect = if approve {
        brief.on_approve.as_deref().map_or_else(
            || {
                if brief.stage.as_ref().is_some_and(|s| s.index + 1 < s.of) {
                    "Approving passes this stage; the next stage's approvers are asked next."
                        .to_owned()
                } else {
                    "Approving lets the call run at once.".to_owned()
                }
            },
            |text| format!("Approving: {text}."),
        )
    } else {
        "Rejecting refuses the call; the reason reaches the requester.".to_owned()
    };
    let _ = write!(
        body,
        "<form method=\"post\" class=\"confirm\">\
         <p class=\"effect\">{}</p>\
         <label for=\"reason\">Reason{}</label>\
         <textarea id=\"reason\" name=\"reason\" rows=\"3\"{}></textarea>{}\
         <button type=\"submit\" class=\"{}\">Confirm: {verb}</button>\
         </form>",
        esc(&effect),
        if require_reason {
            " (required)"
        } else {
            " (optional)"
        },
        if require_reason { " required" } else { "" },
        problem
            .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(p)))
            .unwrap_or_default(),
        if approve { "approve" } else { "danger" },
    );
    let _ = write!(
        body,
        "<p class=\"muted small\">You decide as <b>{}</b>, the address this link was sent to \
         (listed as <b>{}</b>). Anyone holding this link can use it once: do not forward it. \
         <a href=\"/dashboard/#/pending/{}\">Open in the console</a></p>",
        esc(&link.address),
        esc(&link.approver),
        open.execution.id,
    );
    body
}

/// The facts of the request: who asked, why, the arguments, the stage.
fn describe(out: &mut String, brief: &Brief, execution: &Execution) {
    let _ = write!(
        out,
        "<p>Requested by <b>{}</b> · action <code>{}</code></p>",
        esc(&brief.requester),
        esc(&brief.action)
    );
    if let Some(stage) = &brief.stage {
        let _ = write!(
            out,
            "<div class=\"why\"><h3>Why you are asked</h3><p>Rule <b>{}</b>: {}</p>",
            esc(&stage.label()),
            esc(&stage.reason)
        );
        if let Some(why) = &stage.why {
            let _ = write!(out, "<p>{}</p>", code_spans(&esc(why)));
        }
        if stage.quorum > 1 {
            let _ = write!(
                out,
                "<p>{} of {} approvals so far.</p>",
                stage.approvals, stage.quorum
            );
        }
        if let Some(at) = stage.expires_at {
            let _ = write!(
                out,
                "<p class=\"expiry\">Expires {}</p>",
                at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        out.push_str("</div>");
    }
    if brief.edited {
        out.push_str(
            "<p class=\"error\">An approver edited these arguments: this is what will run.</p>",
        );
    }
    out.push_str("<h3>Arguments</h3><dl class=\"args\">");
    for (name, value) in &brief.rows {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(name), esc(value));
    }
    let _ = write!(
        out,
        "</dl><p class=\"muted small\">Execution <code>{}</code></p>",
        execution.id
    );
}

/// Escaped text with its `backticked` parts as `<code>`.
fn code_spans(escaped: &str) -> String {
    escaped
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if !i.is_multiple_of(2) {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

fn decided(execution: &Execution, brief: &Brief) -> String {
    let outcome = match execution.status {
        ExecutionStatus::Rejected => "Rejected. The call will not run.".to_owned(),
        ExecutionStatus::Approved => match &brief.on_approve {
            Some(text) => format!("Approved: {text}."),
            None => "Approved. The call runs now.".to_owned(),
        },
        ExecutionStatus::AwaitingApproval => match &brief.stage {
            Some(s) if s.approvals > 0 && s.approvals < s.quorum as usize => format!(
                "Approval recorded: {} of {} so far; the others are still asked.",
                s.approvals, s.quorum
            ),
            _ => "Approval recorded; the next stage's approvers are asked next.".to_owned(),
        },
        other => format!("Recorded. The request is now {other}."),
    };
    format!(
        "<h2 class=\"outcome\">{}</h2><p>{}</p><p class=\"muted small\">Execution <code>{}</code>. \
         This link is used up. <a href=\"/dashboard/#/pending/{}\">Open in the console</a></p>",
        esc(&outcome),
        esc(&brief.title),
        execution.id,
        execution.id
    )
}

fn refusal(error: &LinkError) -> Response {
    let status = match error {
        LinkError::Malformed | LinkError::Forged | LinkError::NotFound => StatusCode::NOT_FOUND,
        LinkError::NotConfigured => StatusCode::NOT_FOUND,
        LinkError::SignInRequired => StatusCode::FORBIDDEN,
        LinkError::Edited => StatusCode::CONFLICT,
        LinkError::Decision(ApprovalError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
        LinkError::Decision(
            ApprovalError::NotAnApprover { .. }
            | ApprovalError::SelfApproval { .. }
            | ApprovalError::SameApproverAcrossStages { .. },
        ) => StatusCode::FORBIDDEN,
        LinkError::Decision(_) => StatusCode::CONFLICT,
        _ => StatusCode::GONE,
    };
    if status.is_server_error() {
        tracing::warn!("an approval link failed: {error}");
    }
    let body = format!(
        "<h2 class=\"outcome\">This link does not decide anything now</h2>\
         <p class=\"refused\">{}</p>\
         <p class=\"muted small\"><a href=\"/dashboard/\">Open the console</a> to see the request as it stands.</p>",
        esc(&error.to_string())
    );
    page(status, &body)
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>governor · decide</title>\
         <link rel=\"icon\" type=\"image/svg+xml\" href=\"/dashboard/favicon.svg\">\
         <link rel=\"stylesheet\" href=\"/dashboard/style.css\"></head>\
         <body><header><h1>governor</h1></header>\
         <main class=\"link-page\"><section class=\"card\">{body}</section></main></body></html>"
    );
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(LINK_PAGE_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // The token is in the URL: it must not leave in a Referer.
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            HeaderName::from_static("x-robots-tag"),
            HeaderValue::from_static("noindex, nofollow"),
        ),
    ];
    (status, headers, html).into_response()
}
