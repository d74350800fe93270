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
use crate::outbox::NotificationKind;
use crate::principal::Principal;
use crate::store::Transition;

mod edits;
mod granting;
pub(crate) mod links;

use edits::{Edit, apply_edits};
use granting::{Granting, check_grant, grant_announcement};

/// What an approver decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// The approver decided another stage of the same request, and the
    /// policy does not allow one person to pass several stages.
    #[error(
        "`{approver}` already decided another stage of execution {execution_id}; stage {stage} needs someone else"
    )]
    SameApproverAcrossStages {
        /// The execution.
        execution_id: ExecutionId,
        /// The approver.
        approver: String,
        /// The stage (from 1) they tried to decide.
        stage: usize,
    },
    /// What the approver saw (`expected_digest`) is no longer what would
    /// run: an edit or a policy change came in between.
    #[error(
        "execution {execution_id} changed since it was shown: it now has digest {current}, not {expected}; look again before deciding"
    )]
    Changed {
        /// The execution.
        execution_id: ExecutionId,
        /// The digest the approver saw.
        expected: String,
        /// The digest of what would run now (empty if none).
        current: String,
    },
    /// The stage expired before the decision.
    #[error("the approval request for execution {execution_id} expired")]
    Expired {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// Someone else decided first.
    #[error("execution {execution_id} was already decided; the other decision stands")]
    Conflict {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One decision as asked for, before it is checked.
struct Ask<'a> {
    verdict: Verdict,
    reason: Option<&'a str>,
    /// Approve with edits: what the call will run with instead.
    edit: Option<Edit>,
    /// The digest of what the approver saw.
    expected_digest: Option<&'a str>,
    /// A standing grant given with the approval.
    grant: Option<Granting<'a>>,
    /// How the decision came, when not through an authenticated session
    /// ([`links::VIA_LINK`]).
    via: Option<&'a str>,
}

impl<'a> Ask<'a> {
    fn new(verdict: Verdict, reason: Option<&'a str>, expected_digest: Option<&'a str>) -> Self {
        Self {
            verdict,
            reason,
            edit: None,
            expected_digest,
            grant: None,
            via: None,
        }
    }
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
    /// approve their own request unless the policy allows it; someone who
    /// decided another stage of the request may not decide this one unless
    /// the policy allows it; a policy with `require_reason` needs one. The
    /// first decision wins: a concurrent second one gets
    /// [`ApprovalError::Conflict`]. Approving the last stage makes the
    /// execution `Approved`; rejecting any stage makes it `Rejected`.
    /// Returns the execution as stored after the decision.
    pub async fn decide(
        &self,
        id: ExecutionId,
        approver: &Principal,
        verdict: Verdict,
        reason: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        self.decide_as_seen(id, approver, verdict, reason, None)
            .await
    }

    /// [`decide`](Self::decide), only if what would run still has
    /// `expected_digest` (the request's [`digest`] when the approver looked
    /// at it); otherwise [`ApprovalError::Changed`]. Consoles and clients
    /// send the digest they showed, so that a decision never applies to
    /// arguments its approver did not see.
    ///
    /// [`digest`]: crate::ApprovalRequest::digest
    pub async fn decide_as_seen(
        &self,
        id: ExecutionId,
        approver: &Principal,
        verdict: Verdict,
        reason: Option<&str>,
        expected_digest: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        let execution = self.pending_execution(id).await?;
        self.record_decision(
            execution,
            approver,
            Ask::new(verdict, reason, expected_digest),
        )
        .await
    }

    /// [`decide_as_seen`](Self::decide_as_seen) for a decision that came
    /// through a channel other than a signed-in session (`slack`), which
    /// the stage records with it.
    pub async fn decide_through(
        &self,
        id: ExecutionId,
        approver: &Principal,
        verdict: Verdict,
        reason: Option<&str>,
        expected_digest: Option<&str>,
        via: &str,
    ) -> Result<Execution, ApprovalError> {
        let execution = self.pending_execution(id).await?;
        let mut ask = Ask::new(verdict, reason, expected_digest);
        ask.via = Some(via);
        self.record_decision(execution, approver, ask).await
    }

    async fn pending_execution(&self, id: ExecutionId) -> Result<Execution, ApprovalError> {
        self.store()
            .execution(id)
            .await?
            .ok_or(ApprovalError::NotFound { execution_id: id })
    }

    async fn record_decision(
        &self,
        execution: Execution,
        approver: &Principal,
        ask: Ask<'_>,
    ) -> Result<Execution, ApprovalError> {
        let store = self.store();
        let id = execution.id;
        let mut updated = execution;
        let waiting = stage_index(updated.approval.as_ref());
        let (mut transition, events) = decision_transition(&mut updated, approver, ask)?;
        let kind = match transition.to {
            ExecutionStatus::AwaitingApproval
                if stage_index(transition.approval.as_ref()) == waiting =>
            {
                None
            }
            ExecutionStatus::AwaitingApproval => Some(NotificationKind::StageAdvanced),
            _ => Some(NotificationKind::Decided),
        };
        if let Some(kind) = kind {
            transition.notifications = self.notifications_for(
                kind,
                &updated,
                transition.approval.as_ref(),
                transition.to,
                transition.at,
            );
        }
        let notify = !transition.notifications.is_empty();
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
        for event in events {
            self.events().emit(event);
        }
        if notify {
            self.kick_delivery();
        }
        Ok(updated)
    }
}

/// The index of the stage `request` waits on.
fn stage_index(request: Option<&crate::approval::ApprovalRequest>) -> Option<usize> {
    request.and_then(|r| r.current_stage()).map(|(i, _)| i)
}

/// The decision as a transition of `e`, whose request it takes (a
/// refused decision leaves `e` without its request: the caller drops it).
fn decision_transition(
    e: &mut Execution,
    approver: &Principal,
    ask: Ask<'_>,
) -> Result<(Transition, Vec<Event>), ApprovalError> {
    let id = e.id;
    let Some(mut updated) = e.approval.take() else {
        return Err(ApprovalError::NotPending {
            execution_id: id,
            status: e.status,
        });
    };
    if e.status == ExecutionStatus::Expired {
        return Err(ApprovalError::Expired { execution_id: id });
    }
    if e.status != ExecutionStatus::AwaitingApproval {
        // It was waiting, and a decision got there first.
        return Err(ApprovalError::Conflict { execution_id: id });
    }
    let now = Utc::now();
    let (index, policy) = check_approver(e, &updated, approver, &ask, now)?;
    if let Some(granting) = &ask.grant {
        check_grant(id, &updated.stages[index], granting)?;
    }
    let reason = ask.reason.map(str::trim).filter(|r| !r.is_empty());
    let Ask {
        verdict,
        edit,
        grant,
        via,
        ..
    } = ask;
    let approved = verdict == Verdict::Approve;
    // The edited arguments as stored (redacted), for the audit record.
    let edits = edit.map(|edit| apply_edits(&mut updated, e, index, edit, now));
    updated.stages[index].decisions.push(StageDecision {
        approver: approver.id.clone(),
        approved,
        reason: reason.map(str::to_owned),
        at: now,
        superseded: false,
        via: via.map(str::to_owned),
    });
    let decided = &updated.stages[index];
    let to = if !approved && decided.spec.veto {
        ExecutionStatus::Rejected
    } else if updated.current_stage().is_none() {
        ExecutionStatus::Approved
    } else {
        // More approvals needed on this stage, or another stage is up.
        ExecutionStatus::AwaitingApproval
    };
    let mut t = Transition::at(now, id, ExecutionStatus::AwaitingApproval, to);
    t.expect_version = Some(e.version);
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
        "by `{}`{}{}{}",
        approver.id,
        match via {
            Some(links::VIA_LINK) => " through an emailed link".to_owned(),
            Some(other) => format!(" through {other}"),
            None => String::new(),
        },
        if edits.is_some() { " with edits" } else { "" },
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    );
    // The audit keeps both versions: the request's inputs are on the
    // execution's first record, the edits on this one.
    let mut record = decision_audit(e, &policy, outcome, by, to, now, t.failure.as_ref(), edits);
    record.approved_digest = approved_digest;
    let mut events = vec![event];
    if let Some(Granting { grant, .. }) = grant {
        let (decision, event) = grant_announcement(e, grant, now);
        let mut decisions = record.decisions.to_vec();
        decisions.push(decision);
        record.decisions = decisions.into();
        events.push(event);
    }
    t.audit = Some(record);
    t.events.extend(events.iter().map(EventRecord::from));
    Ok((t, events))
}

/// Whether `approver` may make the decision `ask` on the waiting stage of
/// `request` (of `e`) at `now`. Returns that stage's index and policy.
fn check_approver(
    e: &Execution,
    request: &crate::approval::ApprovalRequest,
    approver: &Principal,
    ask: &Ask<'_>,
    now: DateTime<Utc>,
) -> Result<(usize, String), ApprovalError> {
    let id = e.id;
    let Some((index, stage)) = request.current_stage() else {
        return Err(ApprovalError::NotPending {
            execution_id: id,
            status: e.status,
        });
    };
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
    if let Some(expected) = ask.expected_digest
        && request.digest.as_deref() != Some(expected)
    {
        return Err(ApprovalError::Changed {
            execution_id: id,
            expected: expected.to_owned(),
            current: request.digest.clone().unwrap_or_default(),
        });
    }
    if approver.id == e.principal.id
        && ask.verdict == Verdict::Approve
        && !stage.spec.allow_self_approval
    {
        return Err(ApprovalError::SelfApproval {
            execution_id: id,
            approver: approver.id.clone(),
        });
    }
    if !stage.spec.allow_same_approver_across_stages
        && request.decided_other_stage(index, &approver.id)
    {
        return Err(ApprovalError::SameApproverAcrossStages {
            execution_id: id,
            approver: approver.id.clone(),
            stage: index + 1,
        });
    }
    if stage.spec.require_reason && ask.reason.map(str::trim).is_none_or(str::is_empty) {
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
    Ok((index, policy))
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
