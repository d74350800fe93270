//! The notification outbox: every notice that someone must be told about
//! (a request created, a stage advanced, a decision, an expiry, an
//! escalation) is stored in the same write as the change that causes it,
//! then delivered at least once by workers that lease it, retry it with
//! backoff and, after too many attempts, leave it dead for a person to
//! look at and retry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::execution::{ExecutionId, Lease};
use crate::json::Json;

/// What a notification tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A call waits for approval.
    Requested,
    /// A stage was decided and the next one waits.
    StageAdvanced,
    /// The request was approved or rejected.
    Decided,
    /// The request expired undecided.
    Expired,
    /// The request expired and went to other approvers.
    Escalated,
    /// The request will expire soon.
    Reminder,
}

impl NotificationKind {
    /// The kind's name (`requested`, `stage_advanced`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::StageAdvanced => "stage_advanced",
            Self::Decided => "decided",
            Self::Expired => "expired",
            Self::Escalated => "escalated",
            Self::Reminder => "reminder",
        }
    }
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: due at `next_attempt_at`.
    Pending,
    /// Delivered.
    Delivered,
    /// Given up after too many attempts, until someone retries it.
    Dead,
}

impl DeliveryState {
    /// The state's name (`pending`, `delivered`, `dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One notice for one delivery target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Its id, which is also the idempotency key receivers see: every
    /// attempt to deliver it carries the same one.
    pub id: uuid::Uuid,
    /// The execution it is about.
    pub execution_id: ExecutionId,
    /// What it tells.
    pub kind: NotificationKind,
    /// The delivery target's name (a channel, `email`, a webhook).
    pub target: String,
    /// Whom it is for, when the target sends to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// What to tell (sensitive fields redacted).
    pub payload: Json,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Where it stands.
    pub state: DeliveryState,
    /// How many deliveries were attempted.
    pub attempts: u32,
    /// When it is due (pending ones).
    pub next_attempt_at: DateTime<Utc>,
    /// The worker delivering it now, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// What the target answered when it took the notification, if it
    /// keeps something for later (a chat message's id, to update it once
    /// the request is decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

impl Notification {
    /// A pending notification of `kind` about `execution_id` for
    /// `target`, due at `now`.
    pub fn new(
        execution_id: ExecutionId,
        kind: NotificationKind,
        target: impl Into<String>,
        payload: Json,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7(),
            execution_id,
            kind,
            target: target.into(),
            recipient: None,
            payload,
            created_at: now,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: now,
            lease: None,
            last_error: None,
            delivered_at: None,
            receipt: None,
        }
    }

    /// For `recipient`.
    pub fn to(mut self, recipient: impl Into<String>) -> Self {
        self.recipient = Some(recipient.into());
        self
    }

    /// The tenant of the execution it is about, as written (`None`: no
    /// tenant).
    pub fn tenant(&self) -> Option<String> {
        match self.payload.value().get("tenant") {
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            _ => None,
        }
    }

    /// Whether a worker may claim it at `now`: pending, due, and not
    /// leased (or its lease lapsed).
    pub fn claimable(&self, now: DateTime<Utc>) -> bool {
        self.state == DeliveryState::Pending
            && self.next_attempt_at <= now
            && self.lease.as_ref().is_none_or(|l| l.until <= now)
    }

    /// Whether `owner` holds its lease at `now`.
    pub fn leased_to(&self, owner: &str, now: DateTime<Utc>) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.owner == owner && l.until > now)
    }

    /// This notification after an attempt at `now` that `outcome`
    /// describes, its lease released.
    pub fn after(&self, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> Self {
        let mut next = self.clone();
        next.lease = None;
        next.attempts = self.attempts.saturating_add(1);
        match outcome {
            DeliveryOutcome::Delivered => {
                next.state = DeliveryState::Delivered;
                next.delivered_at = Some(now);
                next.last_error = None;
            }
            DeliveryOutcome::Retry { at, error } => {
                next.next_attempt_at = *at;
                next.last_error = Some(error.clone());
            }
            DeliveryOutcome::Dead { error } => {
                next.state = DeliveryState::Dead;
                next.last_error = Some(error.clone());
            }
        }
        next
    }

    /// This dead notification made pending again, due at `now` (its
    /// attempts are kept).
    pub fn revived(&self, now: DateTime<Utc>) -> Self {
        let mut next = self.clone();
        next.state = DeliveryState::Pending;
        next.next_attempt_at = now;
        next.lease = None;
        next
    }
}

/// How an attempt to deliver a notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The target took it.
    Delivered,
    /// It failed and is tried again at `at`.
    Retry {
        /// When to try again.
        at: DateTime<Utc>,
        /// Why it failed.
        error: String,
    },
    /// It failed for the last time.
    Dead {
        /// Why it failed.
        error: String,
    },
}

/// Filters for listing notifications. Results are oldest first.
#[derive(Debug, Clone, Default)]
pub struct NotificationQuery {
    /// Only those about this execution.
    pub execution_id: Option<ExecutionId>,
    /// Only those in this state.
    pub state: Option<DeliveryState>,
    /// Only those created after this id (a cursor).
    pub after: Option<uuid::Uuid>,
    /// At most this many (0 means 100; capped at 10,000).
    pub limit: usize,
}

impl NotificationQuery {
    /// The limit as applied.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(10_000),
        }
    }

    /// Whether `n` passes the filters (the cursor and limit aside).
    pub fn matches(&self, n: &Notification) -> bool {
        self.execution_id.is_none_or(|id| n.execution_id == id)
            && self.state.is_none_or(|s| n.state == s)
            && self.after.is_none_or(|after| n.id > after)
    }
}
