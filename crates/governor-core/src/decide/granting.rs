//! Standing grants given with a decision.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{ApprovalError, Ask, Verdict, decision_event};
use crate::approval::ApprovalStage;
use crate::audit::DecisionRecord;
use crate::event::{Event, EventKind};
use crate::execution::{Execution, ExecutionId};
use crate::governor::Governor;
use crate::grant::Grant;
use crate::principal::Principal;

/// A standing grant asked for with an approval.
pub(super) struct Granting<'a> {
    pub(super) grant: &'a Grant,
    pub(super) window: std::time::Duration,
    pub(super) same_arguments: bool,
}

impl Governor {
    /// Approves the waiting stage of `id` and grants the same for `window`:
    /// the requester's later calls of this action pass this stage's policy
    /// without asking (only with identical arguments if `same_arguments`).
    ///
    /// The approver is checked exactly as for [`approve`](Self::approve).
    /// Only a decision that completes its stage alone may grant (the
    /// policy's quorum is 1), within the policy's [`GrantRules`]. The
    /// grant is keyed by the requester's tenant and id, the action and its
    /// policy version (a changed policy voids it); the decision's audit
    /// record names it and a `grant.created` event announces it.
    ///
    /// [`GrantRules`]: crate::GrantRules
    pub async fn approve_and_grant(
        &self,
        id: ExecutionId,
        approver: &Principal,
        reason: Option<&str>,
        window: std::time::Duration,
        same_arguments: bool,
        expected_digest: Option<&str>,
    ) -> Result<(Execution, Grant), ApprovalError> {
        let execution = self.pending_execution(id).await?;
        let request = execution
            .approval
            .as_ref()
            .ok_or(ApprovalError::NotPending {
                execution_id: id,
                status: execution.status,
            })?;
        let (_, stage) = request.current_stage().ok_or(ApprovalError::NotPending {
            execution_id: id,
            status: execution.status,
        })?;
        if same_arguments
            && request
                .will_run(&execution.inputs)
                .as_str()
                .contains(crate::redact::REDACTED)
        {
            return Err(ApprovalError::GrantRefused {
                execution_id: id,
                reason: "the arguments hold sensitive fields, which are never kept in clear, so a grant for the same arguments could never match".into(),
            });
        }
        let now = Utc::now();
        let grant = Grant {
            id: uuid::Uuid::now_v7(),
            action: execution.action.to_string(),
            policy: stage.spec.policy.clone(),
            principal: execution.principal.id.clone(),
            tenant: execution.principal.tenant.clone(),
            policy_version: request.policy_version.clone().unwrap_or_default(),
            execution_id: Some(id),
            arguments: same_arguments.then(|| request.will_run(&execution.inputs).clone()),
            until: chrono::Duration::from_std(window)
                .ok()
                .and_then(|w| now.checked_add_signed(w))
                .unwrap_or(now),
            granted_by: approver.id.clone(),
            reason: reason.map(str::to_owned),
            created_at: now,
        };
        let mut ask = Ask::new(Verdict::Approve, reason, expected_digest);
        ask.grant = Some(Granting {
            grant: &grant,
            window,
            same_arguments,
        });
        let decided = self.record_decision(execution, approver, ask).await?;
        self.store().put_grant(&grant).await?;
        Ok((decided, grant))
    }
}

/// Whether the decision on `stage` may give the grant asked for: only a
/// decision that completes a stage alone (quorum 1), within the policy's
/// rules.
pub(super) fn check_grant(
    id: ExecutionId,
    stage: &ApprovalStage,
    granting: &Granting<'_>,
) -> Result<(), ApprovalError> {
    let refused = |reason: String| ApprovalError::GrantRefused {
        execution_id: id,
        reason,
    };
    if stage.spec.quorum > 1 || stage.approvals() > 0 {
        return Err(refused(format!(
            "stage `{}` needs {} approvals; a grant may only come from a decision that completes a stage alone",
            stage.spec.policy, stage.spec.quorum
        )));
    }
    match stage
        .spec
        .grants
        .refusal(granting.window, granting.same_arguments)
    {
        Some(reason) => Err(refused(reason)),
        None => Ok(()),
    }
}

/// The audit decision and event that announce `grant`, given with a
/// decision on `e`.
pub(super) fn grant_announcement(
    e: &Execution,
    grant: &Grant,
    now: DateTime<Utc>,
) -> (DecisionRecord, Event) {
    let scope = if grant.arguments.is_some() {
        "with the same arguments"
    } else {
        "with any arguments"
    };
    let record = DecisionRecord {
        policy: Arc::from(grant.policy.as_str()),
        outcome: Cow::Borrowed("grant_created"),
        reason: Some(format!(
            "standing grant {} by `{}`: `{}` may call `{}` {scope} until {} without asking",
            grant.id, grant.granted_by, grant.principal, grant.action, grant.until
        )),
        shadow: false,
    };
    let mut shown = grant.clone();
    // The arguments stay on the grant; the event says only whether any.
    shown.arguments = None;
    let data = serde_json::json!({ "grant": shown, "same_arguments": grant.arguments.is_some() });
    (
        record,
        decision_event(e, EventKind::GrantCreated, now, &data),
    )
}
