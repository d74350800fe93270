//! Expiry: requests nobody decided in time get their policy's `on_expiry`,
//! applied durably by whichever instance sweeps first; before that, the
//! approvers who have not decided are reminded at the times the policy
//! sets (`notify.remind_before_seconds`), each reminder once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::approval::{OnExpiry, StageDecision};
use crate::decide::{decision_audit, decision_event};
use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, EventKind, EventRecord};
use crate::execution::{Execution, ExecutionStatus, Failure};
use crate::governor::Governor;
use crate::outbox::NotificationKind;
use crate::store::{ExecutionQuery, Transition};

/// The approver recorded for decisions made by `on_expiry`.
pub const EXPIRY_APPROVER: &str = "system:expiry";

impl Governor {
    /// Applies `on_expiry` to every parked execution whose waiting stage
    /// has expired, sends the reminders that are due, and returns how many
    /// executions it changed. Safe to run from
    /// several instances at once: each change is conditional on the
    /// execution's version, so every expiry is applied once.
    pub async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let store = self.store();
        let now = Utc::now();
        let mut handled = 0;
        let mut before = None;
        loop {
            let page = store
                .executions(&ExecutionQuery {
                    statuses: vec![ExecutionStatus::AwaitingApproval],
                    before,
                    limit: 500,
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            for e in &page {
                if let Some(t) = self.reminder_transition(e, now) {
                    handled += usize::from(self.apply_sweep(&t, None).await?);
                    continue;
                }
                let Some((mut t, event)) = expiry_transition(e, now) else {
                    continue;
                };
                let kind = match (t.to, event.data.value()["on_expiry"].as_str()) {
                    (ExecutionStatus::Expired, _) => NotificationKind::Expired,
                    (_, Some("escalated")) => NotificationKind::Escalated,
                    (ExecutionStatus::AwaitingApproval, _) => NotificationKind::StageAdvanced,
                    _ => NotificationKind::Decided,
                };
                t.notifications = self.notifications_for(kind, e, t.approval.as_ref(), t.to, now);
                handled += usize::from(self.apply_sweep(&t, Some(event)).await?);
            }
        }
        Ok(handled)
    }

    /// Writes one change a sweep found (with its event); `false` when
    /// another instance or a decision got there first.
    async fn apply_sweep(&self, t: &Transition, event: Option<Event>) -> Result<bool, StoreError> {
        match self.store().transition(t).await {
            Ok(()) => {
                if let Some(event) = event {
                    self.events().emit(event);
                }
                if !t.notifications.is_empty() {
                    self.kick_delivery();
                }
                Ok(true)
            }
            // Decided or swept elsewhere meanwhile.
            Err(err) if err.kind() == StoreErrorKind::Conflict => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The reminders of `e`'s waiting stage that are due at `now` and not
    /// yet sent, as a change that records them and notifies the
    /// approvers (one reminder for several due at once).
    fn reminder_transition(&self, e: &Execution, now: DateTime<Utc>) -> Option<Transition> {
        let request = e.approval.as_ref()?;
        let (index, stage) = request.current_stage()?;
        let expires_at = stage.expires_at.filter(|t| *t > now)?;
        let due: Vec<u64> = stage
            .spec
            .notify
            .remind_before_seconds
            .iter()
            .copied()
            .filter(|before| !stage.reminded.contains(before))
            .filter(|before| {
                i64::try_from(*before)
                    .ok()
                    .and_then(chrono::Duration::try_seconds)
                    .is_some_and(|b| now >= expires_at - b)
            })
            .collect();
        if due.is_empty() {
            return None;
        }
        let mut updated = request.clone();
        updated.stages[index].reminded.extend(due);
        let mut t = Transition::at(
            now,
            e.id,
            ExecutionStatus::AwaitingApproval,
            ExecutionStatus::AwaitingApproval,
        );
        t.expect_version = Some(e.version);
        t.notifications = self.notifications_for(
            NotificationKind::Reminder,
            e,
            Some(&updated),
            ExecutionStatus::AwaitingApproval,
            now,
        );
        t.approval = Some(updated);
        Some(t)
    }

    /// Runs [`sweep_expired`](Self::sweep_expired) every `every` until the
    /// returned task is aborted. Errors are logged and retried next round.
    pub fn spawn_expiry_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let governor = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = governor.sweep_expired().await {
                    tracing::warn!("expiry sweep failed: {e}");
                }
            }
        })
    }
}

fn expiry_transition(e: &Execution, now: DateTime<Utc>) -> Option<(Transition, Event)> {
    let request = e.approval.as_ref()?;
    let (index, stage) = request.current_stage()?;
    if stage.expires_at.is_none_or(|t| t > now) {
        return None;
    }
    let policy = stage.spec.policy.clone();
    let mut updated = request.clone();
    let last = index + 1 == updated.stages.len();
    let (to, outcome, failure) = match &stage.spec.on_expiry {
        OnExpiry::Reject => {
            let message =
                format!("nobody decided before the approval request expired (policy `{policy}`)");
            (
                ExecutionStatus::Expired,
                "expired",
                Some(Failure::new("expired", message).with_policy(policy.clone())),
            )
        }
        OnExpiry::Approve => {
            updated.stages[index].decisions.push(StageDecision {
                approver: EXPIRY_APPROVER.to_owned(),
                approved: true,
                reason: Some("approved on expiry, as the policy says".to_owned()),
                at: now,
                superseded: false,
                via: None,
            });
            let to = if last {
                ExecutionStatus::Approved
            } else {
                ExecutionStatus::AwaitingApproval
            };
            (to, "approved_on_expiry", None)
        }
        OnExpiry::Escalate {
            approvers,
            expires_in,
        } => {
            let s = &mut updated.stages[index];
            s.spec.approvers = approvers.clone();
            s.spec.on_expiry = OnExpiry::Reject;
            s.expires_at = expires_in
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .and_then(|d| now.checked_add_signed(d));
            (ExecutionStatus::AwaitingApproval, "escalated", None)
        }
    };
    let mut t = Transition::at(now, e.id, ExecutionStatus::AwaitingApproval, to);
    t.expect_version = Some(e.version);
    let data = json!({
        "stage": index + 1,
        "policy": policy,
        "on_expiry": outcome,
        "approvers": updated.stages[index].spec.approvers,
        "next_status": to,
    });
    let event = decision_event(e, EventKind::ApprovalTimeout, now, &data);
    let by = format!("by `{EXPIRY_APPROVER}`");
    let mut record = decision_audit(e, &policy, outcome, by, to, now, failure.as_ref(), None);
    if to == ExecutionStatus::Approved {
        record.approved_digest = updated.digest.clone();
    }
    t.audit = Some(record);
    t.failure = failure;
    t.approval = Some(updated);
    t.events.push(EventRecord::from(&event));
    Some((t, event))
}
