//! `/govern/approvals`: list, show and decide approval requests.

use std::time::Duration;

use axum::Json as Reply;
use axum::extract::State;
use chrono::Utc;
use governor_core::{Execution, ExecutionQuery, ExecutionStatus};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::Caller;
use crate::extract::{Body, Id, Params};
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::{ApprovalView, Page, READ_PERMISSION, can_decide, can_view};

/// Filters of `GET /govern/approvals/pending`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PendingQuery {
    /// Only this action.
    action: Option<String>,
    /// Only requests whose waiting stage lists exactly this approver
    /// entry (an id, an email or `role:<name>`).
    approver: Option<String>,
    /// Only requests the caller can decide now.
    #[serde(default)]
    decidable: bool,
    /// Only requests made at least this many seconds ago.
    older_than: Option<u64>,
    /// Page size (default 50, at most 500).
    limit: Option<usize>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

pub(crate) async fn pending(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<PendingQuery>,
) -> Result<Reply<Page<ApprovalView>>, Problem> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let until = match q.older_than {
        None => None,
        Some(secs) => Some(
            i64::try_from(secs)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .and_then(|age| Utc::now().checked_sub_signed(age))
                .ok_or_else(|| Problem::bad_request(format!("`older_than={secs}` is too large")))?,
        ),
    };
    let query = ExecutionQuery {
        statuses: vec![ExecutionStatus::AwaitingApproval],
        action: q.action.clone(),
        until,
        before: crate::executions::cursor(q.cursor.as_deref())?,
        limit,
        ..ExecutionQuery::default()
    };
    let keep = |e: &Execution| {
        can_view(&caller, e)
            && (!q.decidable || can_decide(&caller.0, e))
            && q.approver.as_ref().is_none_or(|wanted| {
                e.approval
                    .as_ref()
                    .and_then(|a| a.current_stage())
                    .is_some_and(|(_, s)| s.spec.approvers.iter().any(|a| a == wanted))
            })
    };
    let page = crate::executions::filtered_page(&state, query, limit, keep).await?;
    Ok(Reply(Page {
        items: page
            .items
            .iter()
            .map(|e| ApprovalView::of(e, &caller, false))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

pub(crate) async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Reply<ApprovalView>, Problem> {
    let execution = visible(&state, &caller, id).await?;
    if execution.approval.is_none() {
        return Err(Problem::not_found(format!(
            "execution {id} has no approval request"
        )));
    }
    Ok(Reply(ApprovalView::of(&execution, &caller, true)))
}

/// `POST /govern/approvals/{id}/approve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    reason: Option<String>,
    /// The complete new arguments, by name (approve with edits).
    edits: Option<Value>,
    /// Also approve the requester's later calls of this action.
    grant: Option<GrantBody>,
}

/// A standing grant made with an approval.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    /// How long the grant lasts.
    window_seconds: u64,
    /// Only for calls with exactly these arguments.
    #[serde(default)]
    same_arguments: bool,
}

pub(crate) async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<ApproveBody>,
) -> Result<Reply<ApprovalView>, Problem> {
    let governor = &state.governor;
    let reason = body.reason.as_deref();
    let execution = match (body.edits, body.grant) {
        (Some(_), Some(_)) => {
            return Err(Problem::unprocessable(
                "`edits` and `grant` cannot be combined: a grant covers calls with the arguments asked for",
            ));
        }
        (Some(edits), None) => {
            governor
                .approve_with_edits(id, &caller.0, edits, reason)
                .await?
        }
        (None, Some(g)) => {
            let window = Duration::from_secs(g.window_seconds);
            governor
                .approve_and_grant(id, &caller.0, reason, window, g.same_arguments)
                .await?
                .0
        }
        (None, None) => governor.approve(id, &caller.0, reason).await?,
    };
    state.metrics.count("governor_decisions_total", "approve");
    Ok(Reply(ApprovalView::of(&execution, &caller, true)))
}

/// `POST /govern/approvals/{id}/reject`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectBody {
    reason: Option<String>,
}

pub(crate) async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<RejectBody>,
) -> Result<Reply<ApprovalView>, Problem> {
    let execution = state
        .governor
        .reject(id, &caller.0, body.reason.as_deref())
        .await?;
    state.metrics.count("governor_decisions_total", "reject");
    Ok(Reply(ApprovalView::of(&execution, &caller, true)))
}

/// The execution `id` if it exists and `caller` may see it.
pub(crate) async fn visible(
    state: &ApiState,
    caller: &Caller,
    id: governor_core::ExecutionId,
) -> Result<Execution, Problem> {
    let execution = state
        .governor
        .execution(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("execution {id} does not exist")))?;
    if !can_view(caller, &execution) {
        return Err(Problem::forbidden(format!(
            "`{}` may not see execution {id}: it is not theirs, they are not an approver, and they lack `{READ_PERMISSION}`",
            caller.0.id
        )));
    }
    Ok(execution)
}
