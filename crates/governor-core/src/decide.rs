//! Human decisions on parked executions: authenticated, authorized, one
//! winner per stage.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::approval::StageDecision;
use crate::audit::{AuditRecord, DecisionRecord};
use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, EventKind, EventRecord};
use crate::execution::{Execution, ExecutionId, ExecutionStatus, Failure};
use crate::governor::Governor;
use crate::json::Json;
use crate::principal::Principal;
use crate::store::Transition;

/// What an approver decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the action run (or move on to the next stage).
    Approve,
    /// Refuse it; the reason reaches the caller.
    Reject,
}

/// Why a decision was not recorded.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such execution.
    #[error("execution {execution_id} does not exist")]
    NotFound {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// The execution never asked for a decision.
    #[error("execution {execution_id} is {status} and has no approval request")]
    NotPending {
        /// The execution.
        execution_id: ExecutionId,
        /// Its status.
        status: ExecutionStatus,
    },
    /// The principal may not decide this stage.
    #[error(
        "`{approver}` is not an approver of stage {stage} (`{policy}`) of execution {execution_id}"
    )]
    NotAnApprover {
        /// The execution.
        execution_id: ExecutionId,
        /// Who tried.
        approver: String,
        /// The stage (from 1).
        stage: usize,
        /// The policy that asked.
        policy: String,
    },
    /// The requester tried to approve their own request.
    #[error("`{approver}` made the request for execution {execution_id} and may not approve it")]
    SelfApproval {
        /// The execution.
        execution_id: ExecutionId,
        /// The requester.
        approver: String,
    },
    /// This approver already decided this stage (quorums count distinct
    /// approvers).
    #[error("`{approver}` already decided stage {stage} of execution {execution_id}")]
    AlreadyDecided {
        /// The execution.
        execution_id: ExecutionId,
        /// The approver.
        approver: String,
        /// The stage (from 1).
        stage: usize,
    },
    /// The stage's policy does not allow this standing grant.
    #[error("no grant for execution {execution_id}: {reason}")]
    GrantRefused {
        /// The execution.
        execution_id: ExecutionId,
        /// Which rule it breaks.
        reason: String,
    },
    /// Edited arguments failed the action's validation.
    #[error("the edited arguments of execution {execution_id} are invalid: {reason}")]
    InvalidEdit {
        /// The execution.
        execution_id: ExecutionId,
        /// What the validation said.
        reason: String,
    },
    /// Edits need the action to be resumable here, and its arguments free of
    /// redacted fields.
    #[error("execution {execution_id} cannot be approved with edits: {reason}")]
    NotEditable {
        /// The execution.
        execution_id: ExecutionId,
        /// Why.
        reason: String,
    },
    /// The policy requires a reason and none was given.
    #[error("a reason is required to decide execution {execution_id} (policy `{policy}`)")]
    ReasonRequired {
        /// The execution.
        execution_id: ExecutionId,
        /// The policy.
        policy: String,
    },
    /// The stage expired before the decision.
    #[error("the approval request for execution {execution_id} expired")]
    Expired {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// Someone else decided first (or the request expired meanwhile).
    #[error("execution {execution_id} was already decided; the other decision stands")]
    Conflict {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Governor {
    /// Approves the stage of `id` that is waiting, as `approver`.
    pub async fn approve(
        &self,
        id: ExecutionId,
        approver: &Principal,
        reason: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        self.decide(id, approver, Verdict::Approve, reason).await
    }

    /// Rejects `id` as `approver`; the reason reaches the caller.
    pub async fn reject(
        &self,
        id: ExecutionId,
        approver: &Principal,
        reason: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        self.decide(id, approver, Verdict::Reject, reason).await
    }

    /// Records a decision on the waiting stage of `id`.
    ///
    /// `approver` must be an authenticated principal listed by the stage
    /// (id, email attribute, or `role:<name>`); the requester may not
    /// approve their own request unless the policy allows it; a policy with
    /// `require_reason` needs one. The first decision wins: a concurrent
    /// second one gets [`ApprovalError::Conflict`]. Approving the last stage
    /// makes the execution `Approved`; rejecting any stage makes it
    /// `Rejected`. Returns the execution as stored after the decision.
    pub async fn decide(
        &self,
        id: ExecutionId,
        approver: &Principal,
        verdict: Verdict,
        reason: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        let store = self.store();
        let Some(execution) = store.execution(id).await? else {
            return Err(ApprovalError::NotFound { execution_id: id });
        };
        self.record_decision(execution, approver, verdict, reason, None)
            .await
    }

    /// Approves with changed arguments (`edits`: the complete new arguments,
    /// an object bound by parameter name). The edits must pass the
    /// action's validation policies again; the action then runs with them
    /// when resumed, while the execution's `inputs` keep what was asked for
    /// and the audit record of the decision keeps the edits. The action
    /// must be registered as resumable here; a caller that was still
    /// waiting gets `Pending` and the execution continues through resume.
    pub async fn approve_with_edits(
        &self,
        id: ExecutionId,
        approver: &Principal,
        edits: serde_json::Value,
        reason: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        let Some(execution) = self.store().execution(id).await? else {
            return Err(ApprovalError::NotFound { execution_id: id });
        };
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
        for policy in action
            .policies
            .iter()
            .filter(|p| p.kind() == crate::policy::PolicyKind::Validation)
        {
            let ctx = crate::policy::PolicyContext {
                execution_id: id,
                action: &execution.action,
                phase: crate::policy::PolicyPhase::PreExecution,
                input: &edits,
                output: None,
                principal: &execution.principal,
            };
            if let crate::policy::Decision::Deny(d) = policy.evaluate(&ctx).await {
                return Err(ApprovalError::InvalidEdit {
                    execution_id: id,
                    reason: d.reason,
                });
            }
        }
        let edits = Json::from(&edits);
        self.record_decision(execution, approver, Verdict::Approve, reason, Some(edits))
            .await
    }

    async fn record_decision(
        &self,
        execution: Execution,
        approver: &Principal,
        verdict: Verdict,
        reason: Option<&str>,
        edits: Option<Json>,
    ) -> Result<Execution, ApprovalError> {
        let store = self.store();
        let id = execution.id;
        let mut updated = execution;
        let (mut transition, event) =
            decision_transition(&mut updated, approver, verdict, reason, edits)?;
        crate::store::transition(&**store, &mut transition)
            .await
            .map_err(|e| match e.kind() {
                StoreErrorKind::Conflict => ApprovalError::Conflict { execution_id: id },
                _ => ApprovalError::Store(e),
            })?;
        // The request moves over rather than being copied once more.
        let approval = transition.approval.take();
        transition.apply_to(&mut updated);
        updated.approval = approval;
        self.events().emit(event);
        Ok(updated)
    }
}

/// The decision as a transition of `e`, whose request it takes (a
/// refused decision leaves `e` without its request: the caller drops it).
fn decision_transition(
    e: &mut Execution,
    approver: &Principal,
    verdict: Verdict,
    reason: Option<&str>,
    edits: Option<Json>,
) -> Result<(Transition, Event), ApprovalError> {
    let id = e.id;
    let Some(mut updated) = e.approval.take() else {
        return Err(ApprovalError::NotPending {
            execution_id: id,
            status: e.status,
        });
    };
    if e.status != ExecutionStatus::AwaitingApproval {
        // It was waiting, and a decision (or expiry) got there first.
        return Err(ApprovalError::Conflict { execution_id: id });
    }
    let Some((index, stage)) = updated.current_stage() else {
        return Err(ApprovalError::NotPending {
            execution_id: id,
            status: e.status,
        });
    };
    let now = Utc::now();
    let policy = stage.spec.policy.clone();
    if stage.expires_at.is_some_and(|t| t <= now) {
        return Err(ApprovalError::Expired { execution_id: id });
    }
    if !stage.is_approver(approver) || approver.is_anonymous() {
        return Err(ApprovalError::NotAnApprover {
            execution_id: id,
            approver: approver.id.clone(),
            stage: index + 1,
            policy,
        });
    }
    if approver.id == e.principal.id
        && verdict == Verdict::Approve
        && !stage.spec.allow_self_approval
    {
        return Err(ApprovalError::SelfApproval {
            execution_id: id,
            approver: approver.id.clone(),
        });
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if stage.spec.require_reason && reason.is_none() {
        return Err(ApprovalError::ReasonRequired {
            execution_id: id,
            policy,
        });
    }

    if stage.has_decided(&approver.id) {
        return Err(ApprovalError::AlreadyDecided {
            execution_id: id,
            approver: approver.id.clone(),
            stage: index + 1,
        });
    }
    let approved = verdict == Verdict::Approve;
    updated.stages[index].decisions.push(StageDecision {
        approver: approver.id.clone(),
        approved,
        reason: reason.map(str::to_owned),
        at: now,
    });
    let decided = &updated.stages[index];
    let last = index + 1 == updated.stages.len();
    let to = if !approved && decided.spec.veto {
        ExecutionStatus::Rejected
    } else if decided.is_approved() && last {
        ExecutionStatus::Approved
    } else {
        // More approvals needed on this stage, or the next stage is up.
        ExecutionStatus::AwaitingApproval
    };
    let mut t = Transition::at(now, id, ExecutionStatus::AwaitingApproval, to);
    t.expect_version = Some(e.version);
    if let Some(edits) = &edits {
        updated.edited_inputs = Some(edits.clone());
        // What is approved now is the edited call.
        if let Some(version) = updated.policy_version.clone() {
            updated.bind(e, edits, &version);
        }
    }
    let approved_digest = updated.digest.clone().filter(|_| approved);
    t.approval = Some(updated);
    let outcome = if approved { "approved" } else { "rejected" };
    let data = DecisionData {
        stage: index + 1,
        policy: &policy,
        approver: &approver.id,
        reason,
        next_status: to,
        edited: edits.is_some(),
    };
    let kind = if approved {
        EventKind::ApprovalGranted
    } else {
        EventKind::ApprovalRejected
    };
    let event = decision_event(e, kind, now, &data);
    if to == ExecutionStatus::Rejected {
        let message = format!(
            "rejected by `{}`: {}",
            approver.id,
            reason.unwrap_or("no reason given")
        );
        t.failure = Some(Failure::new("rejected", message).with_policy(policy.clone()));
    }
    let by = format!(
        "by `{}`{}{}",
        approver.id,
        if edits.is_some() { " with edits" } else { "" },
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    );
    // The audit keeps both versions: the request's inputs are on the
    // execution's first record, the edits on this one.
    let mut record = decision_audit(e, &policy, outcome, by, to, now, t.failure.as_ref(), edits);
    record.approved_digest = approved_digest;
    t.audit = Some(record);
    t.events.push(EventRecord::from(&event));
    Ok((t, event))
}

impl Governor {
    /// Approves the waiting stage of `id` and grants the same for `window`:
    /// the requester's later calls of this action pass this stage's policy
    /// without asking (only with identical arguments if `same_arguments`).
    /// The approver is checked exactly as for [`approve`](Self::approve).
    pub async fn approve_and_grant(
        &self,
        id: ExecutionId,
        approver: &Principal,
        reason: Option<&str>,
        window: std::time::Duration,
        same_arguments: bool,
    ) -> Result<(Execution, crate::grant::Grant), ApprovalError> {
        let Some(execution) = self.store().execution(id).await? else {
            return Err(ApprovalError::NotFound { execution_id: id });
        };
        let (policy, rules) = execution
            .approval
            .as_ref()
            .and_then(|a| a.current_stage())
            .map(|(_, s)| (s.spec.policy.clone(), s.spec.grants.clone()))
            .ok_or(ApprovalError::NotPending {
                execution_id: id,
                status: execution.status,
            })?;
        if let Some(reason) = rules.refusal(window, same_arguments) {
            return Err(ApprovalError::GrantRefused {
                execution_id: id,
                reason,
            });
        }
        let now = Utc::now();
        let grant = crate::grant::Grant {
            id: uuid::Uuid::now_v7(),
            action: execution.action.to_string(),
            policy,
            principal: execution.principal.id.clone(),
            arguments: same_arguments.then(|| execution.inputs.clone()),
            until: chrono::Duration::from_std(window)
                .ok()
                .and_then(|w| now.checked_add_signed(w))
                .unwrap_or(now),
            granted_by: approver.id.clone(),
            reason: reason.map(str::to_owned),
            created_at: now,
        };
        let decided = self
            .record_decision(execution, approver, Verdict::Approve, reason, None)
            .await?;
        self.store().put_grant(&grant).await?;
        Ok((decided, grant))
    }
}

/// The event announcing a decision (human or `on_expiry`) on `e`.
/// The data of an approval granted or rejected event, written straight to
/// text (fields in the order they were always written).
#[derive(serde::Serialize)]
struct DecisionData<'a> {
    stage: usize,
    policy: &'a str,
    approver: &'a str,
    reason: Option<&'a str>,
    next_status: ExecutionStatus,
    edited: bool,
}

pub(crate) fn decision_event(
    e: &Execution,
    kind: EventKind,
    now: DateTime<Utc>,
    data: &impl serde::Serialize,
) -> Event {
    Event::at(
        now,
        kind,
        e.id,
        Arc::clone(&e.action),
        Json::encode(data).unwrap_or_else(|_| Json::null()),
    )
}

/// The audit record of a decision (human or `on_expiry`) on `e`.
#[expect(
    clippy::too_many_arguments,
    reason = "one flat record of one decision; a builder would only rename the fields"
)]
pub(crate) fn decision_audit(
    e: &Execution,
    policy: &str,
    outcome: &'static str,
    by: String,
    to: ExecutionStatus,
    at: DateTime<Utc>,
    failure: Option<&Failure>,
    inputs: Option<Json>,
) -> AuditRecord {
    AuditRecord {
        execution_id: e.id,
        action: Arc::clone(&e.action),
        principal: e.principal.id.as_str().into(),
        tenant: e.principal.tenant.clone(),
        status: to,
        at,
        decisions: vec![DecisionRecord {
            policy: Arc::from(policy),
            outcome: Cow::Borrowed(outcome),
            reason: Some(by),
            shadow: false,
        }]
        .into(),
        inputs,
        output: None,
        failure: failure.map(|f| f.message.clone()),
        tags: Arc::default(),
        approved_digest: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data is what the `json!` object it replaced gave. Compared as
    /// values: that object's key order depends on serde_json's
    /// `preserve_order` feature, which other crates may turn on.
    #[test]
    fn decision_data_keeps_its_fields() {
        let data = DecisionData {
            stage: 1,
            policy: "big",
            approver: "cfo",
            reason: None,
            next_status: ExecutionStatus::Approved,
            edited: false,
        };
        let was = serde_json::json!({
            "stage": 1, "policy": "big", "approver": "cfo",
            "reason": null, "next_status": "approved", "edited": false,
        });
        assert_eq!(Json::encode(&data).unwrap().value(), was);
    }
}
