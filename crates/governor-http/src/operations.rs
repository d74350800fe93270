//! What operators look at and switch: the audit log and its chain, the
//! kill switch, and the approval pipelines (flows) with their waiting
//! counts.

use std::collections::BTreeMap;

use axum::Json as Reply;
use axum::extract::State;
use governor_core::{
    AuditEntry, ExecutionQuery, ExecutionStatus, PAUSE_PERMISSION, Pause, PauseMode,
};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::extract::{Body, Params};
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::READ_PERMISSION;

/// Pending requests a flows view reads for its stage breakdown at most
/// (beyond, it says so and counts each action's total with a count query).
const FLOW_SCAN_LIMIT: usize = 2_000;

fn need(caller: &Caller, permission: &str, what: &str) -> Result<(), Problem> {
    if caller.may(permission) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "{what} needs `{permission}`, which `{}` lacks",
            caller.0.id
        )))
    }
}

/// Kill-switch changes are audited with their reason; a blank one is 422.
fn reason_given(reason: &str, what: &str) -> Result<(), Problem> {
    if reason.trim().is_empty() {
        return Err(Problem::unprocessable(format!("{what} needs a reason")));
    }
    Ok(())
}

/// `GET /govern/audit` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Only entries after this sequence number.
    after: Option<u64>,
    /// Page size (default 100, at most 1,000).
    limit: Option<usize>,
}

/// A page of the audit log, oldest first.
#[derive(Debug, Serialize)]
pub(crate) struct AuditPage {
    items: Vec<AuditEntry>,
    /// Pass as `after` for the next page; `null` at the end.
    next_after: Option<u64>,
}

pub(crate) async fn audit(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Reply<AuditPage>, Problem> {
    need(&caller, READ_PERMISSION, "the audit log")?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut items = state
        .governor
        .store()
        .audit_entries(q.after.unwrap_or(0), limit + 1)
        .await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_after = more.then(|| items.last().map(|e| e.seq)).flatten();
    Ok(Reply(AuditPage { items, next_after }))
}

/// The result of checking the whole chain.
#[derive(Debug, Serialize)]
pub(crate) struct Verified {
    ok: bool,
    entries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// When more entries follow the ones checked: pass as `from` to go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_from: Option<u64>,
}

/// `GET /govern/audit/verify` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyQuery {
    /// The entry to start at (default: the first).
    from: Option<u64>,
    /// At most this many entries (default and most: 1,000,000).
    limit: Option<u64>,
}

/// The most entries one verification reads (a page at a time).
const VERIFY_MAX: u64 = 1_000_000;

pub(crate) async fn verify(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<VerifyQuery>,
) -> Result<Reply<Verified>, Problem> {
    need(&caller, READ_PERMISSION, "verifying the audit log")?;
    let max = q.limit.unwrap_or(VERIFY_MAX).clamp(1, VERIFY_MAX);
    let check =
        governor_core::check_audit_log(&**state.governor.store(), q.from.unwrap_or(0), max).await?;
    Ok(Reply(Verified {
        ok: check.error.is_none(),
        entries: check.entries,
        error: check.error.map(|e| e.to_string()),
        next_from: check.next,
    }))
}

pub(crate) async fn pauses(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Reply<Vec<Pause>>, Problem> {
    if !caller.may(PAUSE_PERMISSION) {
        need(&caller, READ_PERMISSION, "the kill switch")?;
    }
    Ok(Reply(state.governor.pauses().await?))
}

/// `POST /govern/pauses`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseBody {
    /// The action to pause; absent or `null` pauses every action.
    action: Option<String>,
    /// `deny` new calls (the default), or `hold` them until the pause is
    /// lifted.
    mode: Option<PauseMode>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn pause(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<PauseBody>,
) -> Result<Reply<Pause>, Problem> {
    reason_given(&body.reason, "a pause")?;
    let pause = state
        .governor
        .pause(
            body.action.as_deref(),
            body.mode.unwrap_or(PauseMode::Deny),
            &caller.0,
            &body.reason,
        )
        .await?;
    Ok(Reply(pause))
}

/// `POST /govern/pauses/lift`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiftBody {
    /// The paused action; absent or `null` lifts the pause of everything.
    action: Option<String>,
    #[serde(default)]
    reason: String,
}

/// Whether a pause was lifted.
#[derive(Debug, Serialize)]
pub(crate) struct Lifted {
    lifted: bool,
}

pub(crate) async fn lift(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<LiftBody>,
) -> Result<Reply<Lifted>, Problem> {
    reason_given(&body.reason, "lifting a pause")?;
    let lifted = state
        .governor
        .lift(body.action.as_deref(), &caller.0, &body.reason)
        .await?;
    Ok(Reply(Lifted { lifted }))
}

/// One stage of a flow with how many requests wait on it.
#[derive(Debug, Serialize)]
pub(crate) struct FlowStage {
    index: usize,
    policy: String,
    approvers: Vec<String>,
    waiting: usize,
}

/// The approval pipeline of one action, as its waiting requests show it.
#[derive(Debug, Serialize)]
pub(crate) struct Flow {
    action: String,
    waiting: usize,
    stages: Vec<FlowStage>,
}

/// Every flow with waiting requests.
#[derive(Debug, Serialize)]
pub(crate) struct Flows {
    flows: Vec<Flow>,
    /// Whether more requests wait than were counted.
    truncated: bool,
}

pub(crate) async fn flows(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Reply<Flows>, Problem> {
    need(&caller, READ_PERMISSION, "the flows view")?;
    let waiting = state
        .governor
        .store()
        .executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::AwaitingApproval],
            limit: FLOW_SCAN_LIMIT,
            ..ExecutionQuery::default()
        })
        .await?;
    let truncated = waiting.len() >= FLOW_SCAN_LIMIT;
    let mut by_action: BTreeMap<String, Flow> = BTreeMap::new();
    for e in &waiting {
        let Some(request) = &e.approval else { continue };
        let flow = by_action
            .entry(e.action.to_string())
            .or_insert_with(|| Flow {
                action: e.action.to_string(),
                waiting: 0,
                stages: Vec::new(),
            });
        flow.waiting += 1;
        let current = request.current_stage().map(|(i, _)| i);
        for (i, stage) in request.stages.iter().enumerate() {
            let policy = &stage.spec.policy;
            let at = match flow
                .stages
                .iter()
                .position(|s| s.index == i && s.policy == *policy)
            {
                Some(at) => at,
                None => {
                    flow.stages.push(FlowStage {
                        index: i,
                        policy: policy.clone(),
                        approvers: stage.spec.approvers.clone(),
                        waiting: 0,
                    });
                    flow.stages.len() - 1
                }
            };
            if current == Some(i) {
                flow.stages[at].waiting += 1;
            }
        }
    }
    let mut flows: Vec<Flow> = by_action.into_values().collect();
    for f in &mut flows {
        f.stages
            .sort_by(|a, b| (a.index, &a.policy).cmp(&(b.index, &b.policy)));
        if truncated {
            // The stages come from a sample; the total is counted.
            let count = state
                .governor
                .store()
                .count_executions(&ExecutionQuery {
                    statuses: vec![ExecutionStatus::AwaitingApproval],
                    action: Some(f.action.clone()),
                    ..ExecutionQuery::default()
                })
                .await?;
            f.waiting = usize::try_from(count).unwrap_or(usize::MAX);
        }
    }
    Ok(Reply(Flows { flows, truncated }))
}

/// A policy as `GET /govern/actions` lists it.
#[derive(Debug, Serialize)]
pub(crate) struct PolicySummary {
    name: String,
    kind: &'static str,
    phase: &'static str,
    shadow: bool,
}

/// An approval stage an action's policies ask for.
#[derive(Debug, Serialize)]
pub(crate) struct StageSummary {
    policy: String,
    approvers: Vec<String>,
    quorum: u32,
}

/// One registered action.
#[derive(Debug, Serialize)]
pub(crate) struct ActionSummary {
    name: String,
    policies: Vec<PolicySummary>,
    /// Its approval pipeline: the stages its approval policies ask for, in
    /// order (a conditional one asks only for some calls).
    stages: Vec<StageSummary>,
    /// The JSON Schema its inputs are validated against, if one.
    input_schema: Option<serde_json::Value>,
    /// How its requests read to approvers, if declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<governor_core::Display>,
}

/// `GET /govern/actions`: every registered action for readers; for
/// others, the actions they may submit over HTTP (external ones).
pub(crate) async fn actions(
    State(state): State<ApiState>,
    caller: Caller,
) -> Reply<Vec<ActionSummary>> {
    let reader = caller.may(READ_PERMISSION);
    let list = state
        .governor
        .registered_actions()
        .iter()
        .filter(|a| reader || a.is_external())
        .map(|a| ActionSummary {
            name: a.name().to_owned(),
            policies: a
                .policies()
                .iter()
                .map(|p| PolicySummary {
                    name: p.name().to_owned(),
                    kind: p.kind().as_str(),
                    phase: p.phase().as_str(),
                    shadow: p.is_shadow(),
                })
                .collect(),
            stages: a
                .policies()
                .iter()
                .filter_map(|p| p.approval_spec())
                .map(|s| StageSummary {
                    policy: s.policy.clone(),
                    approvers: s.approvers.clone(),
                    quorum: s.quorum,
                })
                .collect(),
            input_schema: a.policies().iter().find_map(|p| p.input_schema()).cloned(),
            display: a.display().cloned(),
        })
        .collect();
    Reply(list)
}
