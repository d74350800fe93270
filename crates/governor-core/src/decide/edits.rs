//! Approve with edits: the edited call passes every pre-execution policy
//! again, and approvals given for other arguments stop counting.

use chrono::{DateTime, Utc};

use super::{ApprovalError, Ask, Verdict};
use crate::approval::{ApprovalRequest, ApprovalSpec, ApprovalStage};
use crate::execution::{Execution, ExecutionId};
use crate::governor::Governor;
use crate::json::Json;
use crate::principal::Principal;

impl Governor {
    /// Approves with changed arguments (`edits`: the complete new arguments,
    /// an object bound by parameter name).
    ///
    /// The edits pass through every pre-execution policy of the action
    /// again (validation, authorization, Cedar, `when:` conditions, rate
    /// limits, custom policies): a denial refuses the edit
    /// ([`ApprovalError::InvalidEdit`]), and an approval policy that asks
    /// for the edited call but did not for the original adds its stage.
    /// Approvals given for other arguments no longer count, in this stage
    /// and every earlier one: their approvers are asked again. Only an edit
    /// by the decision that alone completes the last stage keeps them.
    ///
    /// The action then runs with the edits when resumed, while the
    /// execution's `inputs` keep what was asked for and the audit record
    /// of the decision keeps the edits. The action must be registered as
    /// resumable here; a caller that was still waiting gets `Pending` and
    /// the execution continues through resume.
    pub async fn approve_with_edits(
        &self,
        id: ExecutionId,
        approver: &Principal,
        edits: serde_json::Value,
        reason: Option<&str>,
        expected_digest: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        let execution = self.pending_execution(id).await?;
        let not_editable = |reason: &str| ApprovalError::NotEditable {
            execution_id: id,
            reason: reason.to_owned(),
        };
        let action = self
            .registered(&execution.action)
            .ok_or_else(|| not_editable("its action is not registered as resumable here"))?;
        if !edits.is_object() {
            return Err(ApprovalError::InvalidEdit {
                execution_id: id,
                reason: "edits must be an object of named arguments".into(),
            });
        }
        let mut redactor = action.redactor.clone();
        redactor.extend(self.redactor().fields());
        if execution.inputs.as_str().contains(crate::redact::REDACTED)
            || redactor.redact(&edits) != edits
        {
            return Err(not_editable(
                "its arguments contain sensitive fields, which are never stored in clear",
            ));
        }
        let new_stages = recheck_edits(&action, &execution, &edits).await?;
        let mut ask = Ask::new(Verdict::Approve, reason, expected_digest);
        ask.edits = Some(Json::from(&edits));
        ask.new_stages = new_stages;
        self.record_decision(execution, approver, ask).await
    }
}

/// Runs every pre-execution policy of `action` against `edits`, as the
/// call would have run them had it been made with the edits. Returns the
/// approvals the edited call needs that the request does not have yet.
/// Nothing is counted: what a policy took (a rate limit's cell) is given
/// back, since the call was already counted when it was made.
async fn recheck_edits(
    action: &crate::action::Action,
    execution: &Execution,
    edits: &serde_json::Value,
) -> Result<Vec<ApprovalSpec>, ApprovalError> {
    use crate::policy::{Decision, PolicyContext, PolicyPhase};
    let ctx = PolicyContext {
        execution_id: execution.id,
        action: &execution.action,
        phase: PolicyPhase::PreExecution,
        input: edits,
        output: None,
        principal: &execution.principal,
    };
    let asked = execution.approval.as_ref();
    let mut allowed = Vec::new();
    let mut new_stages = Vec::new();
    let mut denial = None;
    for policy in action.policies.iter() {
        if !policy.phase().applies_to(PolicyPhase::PreExecution) || policy.is_shadow() {
            continue;
        }
        match policy.evaluate(&ctx).await {
            Decision::Allow => allowed.push(policy),
            Decision::Warn(_) => {}
            Decision::Deny(d) => {
                denial = Some(format!(
                    "policy `{}` denies them: {}",
                    policy.name(),
                    d.reason
                ));
                break;
            }
            Decision::RequireApproval(spec) => {
                let known =
                    asked.is_some_and(|r| r.stages.iter().any(|s| s.spec.policy == spec.policy));
                if !known {
                    new_stages.push(spec);
                }
            }
        }
    }
    for policy in allowed {
        policy.release(&ctx);
    }
    match denial {
        Some(reason) => Err(ApprovalError::InvalidEdit {
            execution_id: execution.id,
            reason,
        }),
        None => Ok(new_stages),
    }
}

/// Makes `edits` what `request` approves. Approvals given for other
/// arguments stop counting, in every stage, so their approvers are asked
/// again; only an edit by the decision that alone completes the last
/// stage keeps them (nobody is left to ask). Stages the edited call newly
/// needs are added at the end.
pub(super) fn apply_edits(
    request: &mut ApprovalRequest,
    e: &Execution,
    index: usize,
    edits: &Json,
    new_stages: Vec<ApprovalSpec>,
    now: DateTime<Utc>,
) {
    let completes_alone = new_stages.is_empty()
        && index + 1 == request.stages.len()
        && request.stages[index].spec.quorum <= 1;
    let unchanged = request.will_run(&e.inputs).value() == edits.value();
    if !completes_alone && !unchanged {
        for decision in request
            .stages
            .iter_mut()
            .flat_map(|s| s.decisions.iter_mut())
        {
            if decision.approved {
                decision.superseded = true;
            }
        }
    }
    request.stages.extend(new_stages.into_iter().map(|spec| {
        ApprovalStage {
            expires_at: spec
                .expires_in
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .and_then(|d| now.checked_add_signed(d)),
            decisions: Vec::new(),
            spec,
        }
    }));
    request.edited_inputs = Some(edits.clone());
    // What is approved now is the edited call.
    if let Some(version) = request.policy_version.clone() {
        request.bind(e, edits, &version);
    }
}
