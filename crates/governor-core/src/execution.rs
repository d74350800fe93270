//! Executions: one record per governed call, and its state machine.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::approval::ApprovalRequest;
use crate::json::Json;
use crate::principal::Principal;

/// The id of an execution: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(Uuid);

impl ExecutionId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self::at(Utc::now())
    }

    /// A fresh id for an execution created at `time`.
    pub fn at(time: DateTime<Utc>) -> Self {
        Self(crate::ids::v7(
            u64::try_from(time.timestamp_millis()).unwrap_or(0),
        ))
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// The UUID's byte order, compared as one big-endian number: stores keep
/// executions in ordered maps, and comparing 16 bytes one at a time was a
/// tenth of a governed call's cost.
impl Ord for ExecutionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_u128().cmp(&other.0.as_u128())
    }
}

impl PartialOrd for ExecutionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Default for ExecutionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ExecutionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where an execution is in its life.
///
/// `Pending → Denied | AwaitingApproval | Running | Failed | Cancelled`;
/// `AwaitingApproval → AwaitingApproval` (a stage decided, more to go)
/// `| Approved | Rejected | Expired | Cancelled`;
/// `Approved → Running`; `Running → Completed | Failed | Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ExecutionStatus {
    /// Recorded; pre-actions and pre-execution policies are running.
    Pending = 0,
    /// Parked until a human decides.
    AwaitingApproval = 1,
    /// Approved, waiting to run.
    Approved = 2,
    /// The action is running.
    Running = 3,
    /// The action returned successfully and post-execution checks passed.
    Completed = 4,
    /// The action, a hook or a post-execution policy failed.
    Failed = 5,
    /// A policy refused the call before it ran.
    Denied = 6,
    /// A human rejected the call.
    Rejected = 7,
    /// Nobody decided before the approval expired.
    Expired = 8,
    /// The caller went away before the call finished.
    Cancelled = 9,
}

impl ExecutionStatus {
    /// Every status, in declaration order.
    pub const ALL: [ExecutionStatus; 10] = [
        Self::Pending,
        Self::AwaitingApproval,
        Self::Approved,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Denied,
        Self::Rejected,
        Self::Expired,
        Self::Cancelled,
    ];

    /// The snake_case name used in storage and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Approved => "approved",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether no further transition can happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::Denied
                | Self::Rejected
                | Self::Expired
                | Self::Cancelled
        )
    }

    /// Whether the state machine allows moving from `self` to `to`.
    pub fn can_become(self, to: ExecutionStatus) -> bool {
        use ExecutionStatus::*;
        matches!(
            (self, to),
            (
                Pending,
                Denied | AwaitingApproval | Approved | Running | Failed | Cancelled
            ) | (
                AwaitingApproval,
                AwaitingApproval | Approved | Rejected | Expired | Cancelled
            ) | (
                Approved,
                Approved | Running | Failed | Cancelled | Denied | AwaitingApproval
            ) | (Running, Completed | Failed | Cancelled)
        )
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown execution status `{0}` (expected one of pending, awaiting_approval, approved, running, completed, failed, denied, rejected, expired, cancelled)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for ExecutionStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A set of statuses, used as the expected "from" state of a conditional
/// transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet(u16);

impl StatusSet {
    /// The empty set.
    pub const EMPTY: StatusSet = StatusSet(0);

    /// A set holding one status.
    pub const fn only(status: ExecutionStatus) -> Self {
        Self(1 << status as u8)
    }

    /// Adds a status.
    #[must_use]
    pub const fn with(self, status: ExecutionStatus) -> Self {
        Self(self.0 | 1 << status as u8)
    }

    /// Every non-terminal status.
    pub const fn active() -> Self {
        Self::only(ExecutionStatus::Pending)
            .with(ExecutionStatus::AwaitingApproval)
            .with(ExecutionStatus::Approved)
            .with(ExecutionStatus::Running)
    }

    /// Whether `status` is in the set.
    pub const fn contains(self, status: ExecutionStatus) -> bool {
        self.0 & (1 << status as u8) != 0
    }

    /// The statuses in the set.
    pub fn iter(self) -> impl Iterator<Item = ExecutionStatus> {
        ExecutionStatus::ALL
            .into_iter()
            .filter(move |s| self.contains(*s))
    }
}

impl From<ExecutionStatus> for StatusSet {
    fn from(status: ExecutionStatus) -> Self {
        Self::only(status)
    }
}

/// Why an execution did not complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Category: `denied`, `invalid`, `rate_limited`, `action`, `hook`,
    /// `post_policy`, `cancelled`, `rejected`, `expired`.
    pub kind: String,
    /// The human-readable message.
    pub message: String,
    /// The policy responsible, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl Failure {
    /// A failure record.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            policy: None,
        }
    }

    /// Names the responsible policy.
    #[must_use]
    pub fn with_policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = Some(policy.into());
        self
    }
}

/// Who currently holds the right to work on an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker (instance) holding the lease.
    pub owner: String,
    /// When the lease lapses unless renewed.
    pub until: DateTime<Utc>,
}

/// One governed call, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Time-ordered id.
    pub id: ExecutionId,
    /// The governed action's name.
    pub action: Arc<str>,
    /// Current status.
    pub status: ExecutionStatus,
    /// Who made the call.
    pub principal: Arc<Principal>,
    /// The arguments bound by parameter name, after redaction.
    pub inputs: Json,
    /// The action's result, after redaction, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Json>,
    /// Why it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The pending or decided approval request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequest>,
    /// The current work lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// When the call was recorded.
    pub created_at: DateTime<Utc>,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
    /// When the execution reached a terminal status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Incremented by every stored change: the basis of compare-and-set
    /// updates that keep the status (recording one stage's decision).
    #[serde(default)]
    pub version: u64,
}

impl Execution {
    /// A new pending execution.
    pub fn new(action: Arc<str>, principal: Arc<Principal>, inputs: Json) -> Self {
        Self::at(Utc::now(), action, principal, inputs)
    }

    /// A new pending execution created at `now`.
    pub fn at(
        now: DateTime<Utc>,
        action: Arc<str>,
        principal: Arc<Principal>,
        inputs: Json,
    ) -> Self {
        Self::with_id(ExecutionId::at(now), now, action, principal, inputs)
    }

    /// A new pending execution `id` created at `now`.
    pub(crate) fn with_id(
        id: ExecutionId,
        now: DateTime<Utc>,
        action: Arc<str>,
        principal: Arc<Principal>,
        inputs: Json,
    ) -> Self {
        Self {
            id,
            action,
            status: ExecutionStatus::Pending,
            principal,
            inputs,
            output: None,
            failure: None,
            approval: None,
            lease: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            version: 0,
        }
    }

    /// The arguments an approved run uses: an approver's edits, else the
    /// inputs as stored.
    pub fn arguments_to_run(&self) -> Json {
        self.approval
            .as_ref()
            .and_then(|a| a.edited_inputs.clone())
            .unwrap_or_else(|| self.inputs.clone())
    }

    /// Duration from creation to finish, in milliseconds.
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at
            .map(|f| (f - self.created_at).num_milliseconds())
    }
}

/// Named points at which state is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    /// Parked for approval: the inputs a resume will run with.
    AwaitingApproval,
    /// Just before the action runs.
    PreExecution,
    /// Just after the action returned.
    PostExecution,
}

impl Checkpoint {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingApproval => "awaiting_approval",
            Self::PreExecution => "pre_execution",
            Self::PostExecution => "post_execution",
        }
    }
}

impl FromStr for Checkpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "awaiting_approval" => Ok(Self::AwaitingApproval),
            "pre_execution" => Ok(Self::PreExecution),
            "post_execution" => Ok(Self::PostExecution),
            other => Err(format!("unknown checkpoint `{other}`")),
        }
    }
}

/// State captured at a checkpoint (redacted like everything else stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Where it was captured.
    pub checkpoint: Checkpoint,
    /// When.
    pub captured_at: DateTime<Utc>,
    /// The inputs (before the action) or the output (after).
    pub state: Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in ExecutionStatus::ALL {
            assert_eq!(s.as_str().parse::<ExecutionStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("nope".parse::<ExecutionStatus>().is_err());
    }

    #[test]
    fn state_machine_rejects_leaving_terminal_states() {
        for s in ExecutionStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for t in ExecutionStatus::ALL {
                assert!(!s.can_become(t));
            }
        }
        assert!(ExecutionStatus::Pending.can_become(ExecutionStatus::Running));
        assert!(!ExecutionStatus::Pending.can_become(ExecutionStatus::Completed));
    }

    #[test]
    fn status_set_membership() {
        let set = StatusSet::only(ExecutionStatus::Pending).with(ExecutionStatus::Running);
        assert!(set.contains(ExecutionStatus::Running));
        assert!(!set.contains(ExecutionStatus::Completed));
        assert_eq!(set.iter().count(), 2);
        assert!(!StatusSet::active().contains(ExecutionStatus::Failed));
    }

    #[test]
    fn ids_order_like_their_uuids() {
        let ids: Vec<Uuid> = (0u128..2_000)
            .map(|i| Uuid::from_u128(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)))
            .collect();
        for pair in ids.windows(2) {
            let (a, b) = (ExecutionId(pair[0]), ExecutionId(pair[1]));
            assert_eq!(a.cmp(&b), pair[0].cmp(&pair[1]));
            assert_eq!(b.cmp(&a), pair[1].cmp(&pair[0]));
        }
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = ExecutionId::new();
        let b = ExecutionId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<ExecutionId>().unwrap(), a);
    }
}
