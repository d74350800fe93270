//! `/govern/approvals`: list, show and decide approval requests.

use std::time::Duration;

use axum::Json as Reply;
use axum::extract::State;
use chrono::Utc;
use governor_core::{Execution, ExecutionQuery, ExecutionStatus, Governor, Verdict};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::Caller;
use crate::extract::{Body, Id, Params};
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::{ApprovalView, Page, can_decide, can_view};

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
            .map(|e| ApprovalView::of(&state.governor, e, &caller, false))
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
    Ok(Reply(ApprovalView::of(
        &state.governor,
        &execution,
        &caller,
        true,
    )))
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
    /// The request's `digest` as the approver saw it: a request that has
    /// changed since (an edit) answers 409 instead.
    expected_digest: Option<String>,
    /// The seed's body: who decides. The identity comes from the token; a
    /// different name here is a 403.
    approver: Option<String>,
    /// The seed's body: `true` on approve (`false` is a 422).
    approved: Option<bool>,
}

/// A standing grant made with an approval.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    /// How long the grant lasts.
    window_seconds: u64,
    /// Only for calls with exactly these arguments (default yes).
    #[serde(default = "yes")]
    same_arguments: bool,
}

fn yes() -> bool {
    true
}

/// The seed's `approver` and `approved` fields, checked against the token's
/// identity and the route.
fn check_seed_fields(
    caller: &Caller,
    approver: Option<&str>,
    approved: Option<bool>,
    route_approves: bool,
) -> Result<(), Problem> {
    if let Some(named) = approver
        && named != caller.0.id
        && caller.0.attributes.get("email").and_then(Value::as_str) != Some(named)
    {
        return Err(Problem::forbidden(format!(
            "the body names approver `{named}`, but the token is `{}`: a decision is made as the token's holder",
            caller.0.id
        )));
    }
    match approved {
        Some(approved) if approved != route_approves => Err(Problem::unprocessable(format!(
            "`approved: {approved}` contradicts this route; {} with /{}",
            if approved { "approve" } else { "reject" },
            if approved { "approve" } else { "reject" },
        ))),
        _ => Ok(()),
    }
}

/// A decision's answer: the request as it now stands, with the seed's
/// `success` and `message` fields so that the seed's clients read it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Decided {
    #[serde(flatten)]
    view: ApprovalView,
    success: bool,
    message: String,
}

impl Decided {
    fn new(governor: &Governor, execution: &Execution, caller: &Caller, verb: &str) -> Self {
        Self {
            message: format!(
                "execution {} {verb}; it is now {}",
                execution.id, execution.status
            ),
            view: ApprovalView::of(governor, execution, caller, true),
            success: true,
        }
    }
}

pub(crate) async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<ApproveBody>,
) -> Result<Reply<Decided>, Problem> {
    visible(&state, &caller, id).await?;
    check_seed_fields(&caller, body.approver.as_deref(), body.approved, true)?;
    let governor = &state.governor;
    let reason = body.reason.as_deref();
    let seen = body.expected_digest.as_deref();
    let execution = match (body.edits, body.grant) {
        (Some(_), Some(_)) => {
            return Err(Problem::unprocessable(
                "`edits` and `grant` cannot be combined: a grant covers calls with the arguments asked for",
            ));
        }
        (Some(edits), None) => {
            governor
                .approve_with_edits(id, &caller.0, edits, reason, seen)
                .await?
        }
        (None, Some(g)) => {
            let window = Duration::from_secs(g.window_seconds);
            governor
                .approve_and_grant(id, &caller.0, reason, window, g.same_arguments, seen)
                .await?
                .0
        }
        (None, None) => {
            governor
                .decide_as_seen(id, &caller.0, Verdict::Approve, reason, seen)
                .await?
        }
    };
    state.metrics.count("governor_decisions_total", "approve");
    Ok(Reply(Decided::new(
        &state.governor,
        &execution,
        &caller,
        "approved",
    )))
}

/// `POST /govern/approvals/{id}/reject`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectBody {
    reason: Option<String>,
    /// As on approve.
    expected_digest: Option<String>,
    /// The seed's body, as on approve.
    approver: Option<String>,
    /// The seed's body: `false` on reject (`true` is a 422).
    approved: Option<bool>,
}

pub(crate) async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<RejectBody>,
) -> Result<Reply<Decided>, Problem> {
    visible(&state, &caller, id).await?;
    check_seed_fields(&caller, body.approver.as_deref(), body.approved, false)?;
    let execution = state
        .governor
        .decide_as_seen(
            id,
            &caller.0,
            Verdict::Reject,
            body.reason.as_deref(),
            body.expected_digest.as_deref(),
        )
        .await?;
    state.metrics.count("governor_decisions_total", "reject");
    Ok(Reply(Decided::new(
        &state.governor,
        &execution,
        &caller,
        "rejected",
    )))
}

/// The execution `id` if it exists and `caller` may see it. An execution
/// the caller may not see answers exactly as a missing one does, so that
/// ids, stages and policies are not revealed to those who may not see
/// them.
pub(crate) async fn visible(
    state: &ApiState,
    caller: &Caller,
    id: governor_core::ExecutionId,
) -> Result<Execution, Problem> {
    let missing = || Problem::not_found(format!("execution {id} does not exist"));
    let execution = state.governor.execution(id).await?.ok_or_else(missing)?;
    if !can_view(caller, &execution) {
        return Err(missing());
    }
    Ok(execution)
}
