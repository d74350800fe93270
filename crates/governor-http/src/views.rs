//! The JSON shapes the API answers with.

use chrono::{DateTime, Utc};
use governor_core::{
    ApprovalRequest, Display, Execution, ExecutionId, ExecutionStatus, Governor, Json, Principal,
};
use serde::Serialize;

use crate::auth::Caller;

/// Permission to read every execution and approval request.
pub const READ_PERMISSION: &str = "governor:read";

/// Permission to resume approved executions by hand.
pub const RESUME_PERMISSION: &str = "governor:resume";

/// Permission to start and report on external executions someone else
/// asked for (a runner acting for agents). Without it only the requester
/// does; the `execution.resumed` event names who started it.
pub const RUN_AS_PERMISSION: &str = "governor:run-as";

/// Lets a caller's other permissions reach every tenant. Without it a
/// caller sees and acts on its own tenant's executions only (a caller
/// without a tenant: those without one).
pub const CROSS_TENANT_PERMISSION: &str = "governor:cross-tenant";

/// Whether `caller` may reach what `owner` asked for: the same tenant, or
/// a cross-tenant caller.
pub(crate) fn same_tenant(caller: &Caller, owner: &Principal) -> bool {
    in_tenant(caller, owner.tenant.as_deref())
}

/// Whether `caller` may reach what belongs to `tenant`: its own tenant, or
/// any with [`CROSS_TENANT_PERMISSION`].
pub(crate) fn in_tenant(caller: &Caller, tenant: Option<&str>) -> bool {
    caller.0.tenant.as_deref() == tenant || caller.may(CROSS_TENANT_PERMISSION)
}

/// Whether `caller` is `owner`: the same id in the same tenant.
pub(crate) fn is_owner(caller: &Caller, owner: &Principal) -> bool {
    caller.0.id == owner.id && caller.0.tenant == owner.tenant
}

/// One page of a listing; pass `next_cursor` as `cursor` for the next.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_cursor: Option<ExecutionId>,
}

/// `e` as answered: without its sealed arguments (ciphertext is of no
/// use to a client, and only the governor holding the key opens it).
pub(crate) fn public(mut e: Execution) -> Execution {
    if let Some(a) = &mut e.approval {
        a.sealed_inputs = None;
    }
    e
}

/// Whether `caller` may see `execution`: within the caller's tenant (or
/// any, with [`CROSS_TENANT_PERMISSION`]), readers and runners see
/// everything; others
/// see what they asked for and what they are (or were) asked to decide.
pub(crate) fn can_view(caller: &Caller, execution: &Execution) -> bool {
    if !same_tenant(caller, &execution.principal) {
        return false;
    }
    caller.may(READ_PERMISSION)
        || caller.may(RUN_AS_PERMISSION)
        || is_owner(caller, &execution.principal)
        || execution
            .approval
            .as_ref()
            .is_some_and(|a| a.stages.iter().any(|s| s.is_approver(&caller.0)))
}

/// Whether `who` could decide the waiting stage of `execution` now.
pub(crate) fn can_decide(who: &Principal, execution: &Execution) -> bool {
    let Some(request) = execution.approval.as_ref() else {
        return false;
    };
    let Some((index, stage)) = request.current_stage() else {
        return false;
    };
    execution.status == ExecutionStatus::AwaitingApproval
        && stage.is_approver(who)
        && (stage.spec.allow_self_approval || execution.principal.id != who.id)
        && (stage.spec.allow_same_approver_across_stages
            || !request.decided_other_stage(index, &who.id))
        && !stage.has_decided(&who.id)
}

/// The stage an approval request waits on.
#[derive(Debug, Serialize)]
pub(crate) struct StageView {
    index: usize,
    of: usize,
    policy: String,
    approvers: Vec<String>,
    reason: String,
    expires_at: Option<DateTime<Utc>>,
    quorum: u32,
    approvals: usize,
    require_reason: bool,
    /// The condition that made the call ask, with the values it read.
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger: Option<TriggerView>,
}

/// Why a stage asks: its condition and the arguments it read, as the
/// approver sees them (sensitive ones redacted or masked).
#[derive(Debug, Serialize)]
pub(crate) struct TriggerView {
    /// The condition as written (`input.amount >= 10000`).
    condition: String,
    /// Whether the call asks because the condition did *not* hold (an
    /// auto-approval that did not apply).
    unless: bool,
    /// The arguments it read, by name, as they will run.
    values: serde_json::Map<String, serde_json::Value>,
}

/// A pending (or decided) approval request as listed.
#[derive(Debug, Serialize)]
pub(crate) struct ApprovalView {
    execution_id: ExecutionId,
    action: String,
    status: ExecutionStatus,
    requester: String,
    tenant: Option<String>,
    /// The arguments as asked for.
    inputs: Json,
    /// The arguments the action will run with: `inputs`, or an
    /// approver's edits.
    will_run: Json,
    /// Whether an approver edited the arguments.
    edited: bool,
    /// What the edits changed, argument by argument (empty if none).
    changes: Vec<Change>,
    /// The digest of what an approval now approves; send it back as
    /// `expected_digest` so that a decision never applies to arguments
    /// the approver did not see.
    digest: Option<String>,
    requested_at: Option<DateTime<Utc>>,
    /// The action's title for these arguments ("Wire €93,231.00 to
    /// Globex"), when the action declares a display.
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    /// How the action's requests read: the title template, the arguments
    /// to show first with their currency or unit, and what approving does.
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<Display>,
    stage: Option<StageView>,
    can_decide: bool,
    /// The whole request with every decision (detail view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<ApprovalRequest>,
}

impl ApprovalView {
    pub(crate) fn of(
        governor: &Governor,
        execution: &Execution,
        caller: &Caller,
        detail: bool,
    ) -> Self {
        let request = execution.approval.as_ref();
        let will_run = request.map_or(&execution.inputs, |a| a.will_run(&execution.inputs));
        let arguments = will_run.value();
        let stage = request
            .and_then(|a| a.current_stage().map(|(i, s)| (i, s, a.stages.len())))
            .map(|(index, s, of)| StageView {
                index,
                of,
                policy: s.spec.policy.clone(),
                approvers: s.spec.approvers.clone(),
                reason: s.spec.reason.clone(),
                expires_at: s.expires_at,
                quorum: s.spec.quorum,
                approvals: s.approvals(),
                require_reason: s.spec.require_reason,
                trigger: s.spec.trigger.as_ref().map(|t| TriggerView {
                    condition: t.condition.clone(),
                    unless: t.unless,
                    values: t
                        .fields
                        .iter()
                        .filter_map(|f| {
                            governor_core::display::lookup(&arguments, f)
                                .map(|v| (f.clone(), v.clone()))
                        })
                        .collect(),
                }),
            });
        let display = governor.action_display(&execution.action);
        Self {
            title: display.as_ref().and_then(|d| d.title(&arguments)),
            display: display.map(|d| (*d).clone()),
            execution_id: execution.id,
            action: execution.action.to_string(),
            status: execution.status,
            requester: execution.principal.id.clone(),
            tenant: execution.principal.tenant.clone(),
            edited: request.is_some_and(|a| a.edited_inputs.is_some()),
            changes: Change::between(execution.inputs.value(), arguments),
            will_run: will_run.clone(),
            digest: request.and_then(|a| a.digest.clone()),
            inputs: execution.inputs.clone(),
            requested_at: request.map(|a| a.requested_at),
            stage,
            can_decide: can_decide(&caller.0, execution),
            approval: detail.then(|| request.cloned()).flatten().map(|mut a| {
                a.sealed_inputs = None;
                a
            }),
        }
    }
}

/// One argument an approver's edit changed.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Change {
    /// The argument's name.
    argument: String,
    /// Its value as asked for (absent: it was not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    asked: Option<serde_json::Value>,
    /// Its value as it will run (absent: the edit removed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    will_run: Option<serde_json::Value>,
}

impl Change {
    /// The arguments that differ between `asked` and `will_run`, by name.
    pub(crate) fn between(asked: serde_json::Value, will_run: serde_json::Value) -> Vec<Self> {
        let (serde_json::Value::Object(asked), serde_json::Value::Object(mut will_run)) =
            (asked, will_run)
        else {
            return Vec::new();
        };
        let mut changes: Vec<Self> = asked
            .into_iter()
            .filter_map(|(argument, before)| {
                let after = will_run.remove(&argument);
                (after.as_ref() != Some(&before)).then_some(Self {
                    argument,
                    asked: Some(before),
                    will_run: after,
                })
            })
            .collect();
        changes.extend(will_run.into_iter().map(|(argument, after)| Self {
            argument,
            asked: None,
            will_run: Some(after),
        }));
        changes.sort_by(|a, b| a.argument.cmp(&b.argument));
        changes
    }
}
