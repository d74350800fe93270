//! Delivering the outbox: targets (channels, email, chat, webhooks) are
//! told about requests and decisions at least once, with retries.
//!
//! A change that someone must hear about writes one [`Notification`] per
//! target (and recipient) in the same store write. Workers in any process
//! sharing the store claim due notifications with a lease, deliver them,
//! and record the outcome: delivered, retried later with exponential
//! backoff and jitter, or dead after [`RetryPolicy::max_attempts`]. A
//! worker that dies mid-delivery loses nothing: its lease lapses and
//! another worker delivers again, with the same notification id, which
//! receivers use as an idempotency key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalRequest;
use crate::execution::{Execution, ExecutionId, ExecutionStatus};
use crate::governor::Governor;
use crate::json::Json;
use crate::outbox::{DeliveryOutcome, Notification, NotificationKind};

/// What a notification tells, as targets receive it: built when it is
/// delivered ([`Governor::notice_of`]) from the execution as stored then
/// and the facts the notification kept from the moment it was written
/// (the status the change left). The outbox row stays small: writing it
/// costs a call that parks little.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// What happened.
    pub kind: NotificationKind,
    /// The execution.
    pub execution_id: ExecutionId,
    /// The governed action.
    pub action: String,
    /// Who asked.
    pub requester: String,
    /// The requester's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The execution's status after the change.
    pub status: ExecutionStatus,
    /// The arguments as asked (sensitive fields redacted or masked).
    pub inputs: Json,
    /// The approval request, with every stage and decision (never its
    /// sealed arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<ApprovalRequest>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl Notice {
    /// The notice of `kind` about `execution` (with `request`, if it has
    /// one) at `at`.
    pub fn of(
        kind: NotificationKind,
        execution: &Execution,
        request: Option<&ApprovalRequest>,
        status: ExecutionStatus,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind,
            execution_id: execution.id,
            action: execution.action.to_string(),
            requester: execution.principal.id.clone(),
            tenant: execution.principal.tenant.clone(),
            status,
            inputs: execution.inputs.clone(),
            request: request.map(|r| ApprovalRequest {
                sealed_inputs: None,
                ..r.clone()
            }),
            at,
        }
    }

    /// The approvers of the stage that waits, if one does.
    pub fn waiting_approvers(&self) -> Vec<String> {
        waiting_approvers(self.request.as_ref())
    }
}

/// The approvers of the stage `request` waits on, if it waits.
pub fn waiting_approvers(request: Option<&ApprovalRequest>) -> Vec<String> {
    request
        .and_then(|r| r.current_stage())
        .map(|(_, s)| s.spec.approvers.clone())
        .unwrap_or_default()
}

/// Whether the policy of the stage `request` waits on (or, decided, its
/// last stage) lets the target `name` hear of it (`notify.channels`).
fn reaches(request: Option<&ApprovalRequest>, name: &str) -> bool {
    let Some(request) = request else {
        return true;
    };
    let stage = request
        .current_stage()
        .map(|(_, s)| s)
        .or_else(|| request.stages.last());
    stage.is_none_or(|s| s.spec.notify.reaches(name))
}

/// What a notification keeps from the moment it was written.
#[derive(Serialize, Deserialize)]
struct Facts {
    status: ExecutionStatus,
    at: DateTime<Utc>,
    /// The execution's tenant, so that listings can be scoped without
    /// reading every execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What went wrong.
    pub message: String,
    /// Whether trying again cannot help (a refused address, a notice the
    /// target cannot use): the notification goes dead at once.
    pub permanent: bool,
}

impl DeliveryError {
    /// A failure worth retrying (the server was down, a timeout).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can mend.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Somewhere notifications go: a channel, an inbox, a chat, a webhook.
#[async_trait]
pub trait DeliveryTarget: Send + Sync + 'static {
    /// The target's name, unique among a governor's targets; stored with
    /// each notification, so keep it stable across restarts.
    fn name(&self) -> &str;

    /// Whether the target is told about `kind` (default: everything).
    fn wants(&self, kind: NotificationKind) -> bool {
        let _ = kind;
        true
    }

    /// Whom a notification of `kind` about `execution` goes to: one per
    /// recipient (default: one, without a recipient). `request` is the
    /// approval request as the change leaves it
    /// ([`waiting_approvers`] names who must act on it).
    fn recipients(
        &self,
        kind: NotificationKind,
        execution: &Execution,
        request: Option<&ApprovalRequest>,
    ) -> Vec<Option<String>> {
        let _ = (kind, execution, request);
        vec![None]
    }

    /// Delivers one notification. Called at least once per notification,
    /// possibly more (after a crash), always with the same
    /// [`Notification::id`].
    async fn deliver(
        &self,
        governor: &Governor,
        notification: &Notification,
    ) -> Result<(), DeliveryError>;

    /// [`deliver`](Self::deliver), keeping what the target answered
    /// ([`Notification::receipt`]): a target that changes what it sent
    /// later (a chat message updated once the request is decided) returns
    /// what it needs to find it. The default keeps nothing.
    async fn deliver_with_receipt(
        &self,
        governor: &Governor,
        notification: &Notification,
    ) -> Result<Option<String>, DeliveryError> {
        self.deliver(governor, notification).await.map(|()| None)
    }
}

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a notification goes dead (default 12: with the
    /// default delays, about 20 minutes of a receiver being down).
    pub max_attempts: u32,
    /// The delay after the first failure (default 1 s); each further one
    /// doubles it.
    pub first_delay: Duration,
    /// The longest delay (default 5 minutes).
    pub max_delay: Duration,
    /// How long a worker holds a notification it delivers (default 60 s):
    /// after that, another worker may deliver it again.
    pub lease: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            lease: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`, after `attempts` failed:
    /// exponential, capped, with jitter (between half and all of it), so
    /// that a recovering receiver is not hit by every retry at once.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let full = doubled.min(self.max_delay);
        // The random bits of a v7 id: no random-number crate for this.
        let random = (uuid::Uuid::now_v7().as_u128() & 0xFFFF) as f64 / 65_535.0;
        full.mul_f64(0.5 + 0.5 * random)
    }

    /// The outcome of a failed attempt at `now` for a notification that
    /// failed `attempts` times before.
    pub fn after_failure(
        &self,
        error: &DeliveryError,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> DeliveryOutcome {
        if error.permanent || attempts + 1 >= self.max_attempts {
            DeliveryOutcome::Dead {
                error: error.message.clone(),
            }
        } else {
            DeliveryOutcome::Retry {
                at: now + chrono::Duration::from_std(self.delay(attempts + 1)).unwrap_or_default(),
                error: error.message.clone(),
            }
        }
    }
}

/// A governor's targets and its delivery loop.
pub(crate) struct Delivery {
    pub(crate) targets: Vec<Arc<dyn DeliveryTarget>>,
    pub(crate) policy: RetryPolicy,
    /// Whether writes start the delivery loop (off: only
    /// [`Governor::spawn_delivery`] or [`Governor::deliver_due`] deliver).
    automatic: bool,
    kick: tokio::sync::Notify,
    started: AtomicBool,
}

impl Delivery {
    pub(crate) fn new(
        targets: Vec<Arc<dyn DeliveryTarget>>,
        policy: RetryPolicy,
        automatic: bool,
    ) -> Self {
        Self {
            targets,
            policy,
            automatic,
            kick: tokio::sync::Notify::new(),
            started: AtomicBool::new(false),
        }
    }
}

/// How often the loop looks for due notifications when nothing woke it
/// (retries coming due, notifications written by other processes).
const POLL: Duration = Duration::from_millis(500);

/// How many notifications one pass claims.
const BATCH: usize = 256;

impl Governor {
    /// The notifications of `kind` about `execution` for every target
    /// that wants them, to write with the change.
    pub(crate) fn notifications_for(
        &self,
        kind: NotificationKind,
        execution: &Execution,
        request: Option<&ApprovalRequest>,
        status: ExecutionStatus,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let Some(delivery) = self.delivery() else {
            return Vec::new();
        };
        let facts = Facts {
            status,
            at: now,
            tenant: execution.principal.tenant.clone(),
        };
        let Ok(payload) = Json::encode(&facts) else {
            return Vec::new();
        };
        delivery
            .targets
            .iter()
            .filter(|t| t.wants(kind) && reaches(request, t.name()))
            .flat_map(|t| {
                t.recipients(kind, execution, request)
                    .into_iter()
                    .map(|to| {
                        let n =
                            Notification::new(execution.id, kind, t.name(), payload.clone(), now);
                        match to {
                            Some(to) => n.to(to),
                            None => n,
                        }
                    })
            })
            .collect()
    }

    /// Wakes the delivery loop (starting it on first use): notifications
    /// were just written.
    pub(crate) fn kick_delivery(&self) {
        if let Some(delivery) = self.delivery()
            && delivery.automatic
        {
            self.start_delivery(delivery);
            delivery.kick.notify_one();
        }
    }

    /// Starts delivering this governor's outbox in the background (a no-op
    /// when it has no targets or already delivers). Writes that carry
    /// notifications start it too; a server calls this at start so that
    /// notifications left by a stopped process are delivered.
    pub fn spawn_delivery(&self) {
        if let Some(delivery) = self.delivery() {
            self.start_delivery(delivery);
        }
    }

    /// Starts the delivery loop once, on the current Tokio runtime.
    fn start_delivery(&self, delivery: &Delivery) {
        if delivery.started.swap(true, Ordering::AcqRel) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            delivery.started.store(false, Ordering::Release);
            tracing::warn!("notifications need a Tokio runtime to be delivered");
            return;
        }
        let governor = self.clone();
        tokio::spawn(async move { governor.delivery_loop().await });
    }

    async fn delivery_loop(&self) {
        let Some(delivery) = self.delivery() else {
            return;
        };
        loop {
            match self.deliver_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!("delivering notifications: {e}"),
            }
            let _ = tokio::time::timeout(POLL, delivery.kick.notified()).await;
        }
    }

    /// The notice `notification` tells, from its execution as stored now
    /// (its request, stages and decisions) and the status the change that
    /// wrote it left.
    pub async fn notice_of(&self, notification: &Notification) -> Result<Notice, DeliveryError> {
        let execution = self
            .execution(notification.execution_id)
            .await
            .map_err(|e| DeliveryError::transient(e.to_string()))?
            .ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "execution {} is no longer stored",
                    notification.execution_id
                ))
            })?;
        let facts: Option<Facts> = serde_json::from_str(notification.payload.as_str()).ok();
        Ok(Notice::of(
            notification.kind,
            &execution,
            execution.approval.as_ref(),
            facts.as_ref().map_or(execution.status, |f| f.status),
            facts.map_or(notification.created_at, |f| f.at),
        ))
    }

    /// The outbox's notifications `query` selects, oldest first.
    pub async fn notifications(
        &self,
        query: &crate::outbox::NotificationQuery,
    ) -> Result<Vec<Notification>, crate::StoreError> {
        self.store().notifications(query).await
    }

    /// Sends the dead notification `id` again; it, or `None` when no dead
    /// notification has that id.
    pub async fn retry_notification(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<Notification>, crate::StoreError> {
        let revived = self.store().retry_notification(id, Utc::now()).await?;
        if revived.is_some() {
            self.kick_delivery();
        }
        Ok(revived)
    }

    /// One delivery pass: claims the notifications due now (up to a
    /// batch), delivers them concurrently and records each outcome.
    /// Returns how many were claimed.
    pub async fn deliver_due(&self) -> Result<usize, crate::StoreError> {
        let Some(delivery) = self.delivery() else {
            return Ok(0);
        };
        let store = self.store();
        let owner = self.instance();
        let claimed = store
            .claim_notifications(owner, Utc::now(), delivery.policy.lease, BATCH)
            .await?;
        let count = claimed.len();
        let attempts = claimed.into_iter().map(|n| async move {
            let mut receipt = None;
            let outcome = match delivery.targets.iter().find(|t| t.name() == n.target) {
                Some(target) => match target.deliver_with_receipt(self, &n).await {
                    Ok(kept) => {
                        receipt = kept;
                        DeliveryOutcome::Delivered
                    }
                    Err(e) => delivery.policy.after_failure(&e, n.attempts, Utc::now()),
                },
                // Written by a process with a target this one lacks: leave
                // it to that process (the lease lapses).
                None => return,
            };
            if let DeliveryOutcome::Retry { error, .. } | DeliveryOutcome::Dead { error } = &outcome
            {
                tracing::warn!(target = %n.target, notification = %n.id, execution_id = %n.execution_id, "delivery failed: {error}");
            }
            let now = Utc::now();
            let mut finished = n.after(&outcome, now);
            finished.receipt = receipt;
            match store.finish_notification(&finished, owner, now).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(notification = %n.id, "the lease lapsed before the delivery was recorded; it will be delivered again"),
                Err(e) => tracing::warn!(notification = %n.id, "recording a delivery: {e}"),
            }
        });
        futures_join_all(attempts).await;
        Ok(count)
    }
}

/// Runs `futures` concurrently to completion (no futures crate here).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// An [`ApprovalChannel`](crate::ApprovalChannel) as a delivery target: it
/// hears of requests that wait for people (new, advanced a stage, or
/// escalated), with retries.
pub(crate) struct ChannelTarget {
    name: String,
    channel: Arc<dyn crate::channel::ApprovalChannel>,
}

impl ChannelTarget {
    pub(crate) fn new(channel: Arc<dyn crate::channel::ApprovalChannel>) -> Self {
        Self {
            name: format!("channel:{}", channel.name()),
            channel,
        }
    }
}

#[async_trait]
impl DeliveryTarget for ChannelTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, kind: NotificationKind) -> bool {
        matches!(
            kind,
            NotificationKind::Requested
                | NotificationKind::StageAdvanced
                | NotificationKind::Escalated
        )
    }

    async fn deliver(
        &self,
        governor: &Governor,
        notification: &Notification,
    ) -> Result<(), DeliveryError> {
        // A request decided meanwhile (elsewhere, or before a crashed
        // worker's retry) needs nobody any more.
        let now = governor
            .execution(notification.execution_id)
            .await
            .map_err(|e| DeliveryError::transient(e.to_string()))?;
        if now.is_none_or(|e| e.status != ExecutionStatus::AwaitingApproval) {
            return Ok(());
        }
        let notice = governor.notice_of(notification).await?;
        let approval = crate::channel::ApprovalNotice {
            execution_id: notice.execution_id,
            action: notice.action,
            requester: notice.requester,
            inputs: notice.inputs,
            request: notice
                .request
                .unwrap_or_else(|| ApprovalRequest::new(Vec::new())),
        };
        self.channel
            .notify(governor, &approval)
            .await
            .map_err(DeliveryError::transient)
    }
}
