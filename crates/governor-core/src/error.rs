//! Errors returned by governed calls and by stores.

use std::time::Duration;

use crate::execution::ExecutionId;
use crate::policy::{FieldError, PolicyPhase};

/// The result type of governor operations.
pub type Result<T, E = GovernError> = std::result::Result<T, E>;

/// Why a governed call did not return the action's own result.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GovernError {
    /// A policy denied the call; the action did not run (or, in the
    /// post-execution phase, its result was withheld).
    #[error("policy `{policy}` denied `{action}`: {reason}")]
    Denied {
        /// The execution that was denied.
        execution_id: ExecutionId,
        /// The governed action.
        action: String,
        /// The policy that denied it.
        policy: String,
        /// The rule inside the policy that failed, when the policy names one.
        rule: Option<String>,
        /// Human-readable reason.
        reason: String,
        /// The phase in which the denial happened.
        phase: PolicyPhase,
    },
    /// Input or output validation failed; every failing field is listed.
    #[error("policy `{policy}` rejected the {} of `{action}`: {}", if *.phase == PolicyPhase::PostExecution { "output" } else { "input" }, FieldError::join(.errors))]
    Invalid {
        /// The execution that failed validation.
        execution_id: ExecutionId,
        /// The governed action.
        action: String,
        /// The validation policy.
        policy: String,
        /// `input` or `output`.
        phase: PolicyPhase,
        /// Every failing field with its JSON pointer path.
        errors: Vec<FieldError>,
    },
    /// A rate limit was exceeded.
    #[error("rate limit `{policy}` exceeded for `{action}`: retry after {:.3}s", .retry_after.as_secs_f64())]
    RateLimited {
        /// The execution that was refused.
        execution_id: ExecutionId,
        /// The governed action.
        action: String,
        /// The rate limit policy.
        policy: String,
        /// How long until a call with the same key would be allowed.
        retry_after: Duration,
    },
    /// A human rejected the call (or nobody decided before it expired).
    #[error("execution {execution_id} was rejected: {reason}")]
    Rejected {
        /// The execution.
        execution_id: ExecutionId,
        /// The approval policy that asked.
        policy: String,
        /// Who rejected it and why, for the caller (or its model) to read.
        reason: String,
    },
    /// The action is paused by the kill switch in deny mode; the call was
    /// recorded as denied and did not run.
    #[error("`{action}` is paused by `{by}`: {reason}")]
    Paused {
        /// The denied execution.
        execution_id: ExecutionId,
        /// The governed action.
        action: String,
        /// Who paused it.
        by: String,
        /// Why.
        reason: String,
    },
    /// The call needs a human decision; the execution is parked durably
    /// under this id.
    #[error("execution {execution_id} is awaiting approval")]
    Pending {
        /// The parked execution (the ticket id).
        execution_id: ExecutionId,
    },
    /// A pre- or post-action hook failed.
    #[error("{stage} `{hook}` of `{action}` failed: {reason}")]
    Hook {
        /// The execution.
        execution_id: ExecutionId,
        /// The governed action.
        action: String,
        /// `pre-action` or `post-action`.
        stage: &'static str,
        /// The hook's name.
        hook: String,
        /// What the hook reported.
        reason: String,
    },
    /// An argument or result could not be serialized for recording.
    #[error("cannot record `{what}` of `{action}`: {reason}")]
    Serialization {
        /// The governed action.
        action: String,
        /// Which argument (or `output`).
        what: String,
        /// The serializer's message.
        reason: String,
    },
    /// The call was cancelled before it finished.
    #[error("execution {execution_id} was cancelled")]
    Cancelled {
        /// The cancelled execution.
        execution_id: ExecutionId,
    },
    /// The governed call was configured wrongly.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store failed; the action was not run unrecorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GovernError {
    /// The execution this error belongs to, when one was recorded.
    pub fn execution_id(&self) -> Option<ExecutionId> {
        match self {
            Self::Denied { execution_id, .. }
            | Self::Invalid { execution_id, .. }
            | Self::RateLimited { execution_id, .. }
            | Self::Pending { execution_id }
            | Self::Paused { execution_id, .. }
            | Self::Rejected { execution_id, .. }
            | Self::Hook { execution_id, .. }
            | Self::Cancelled { execution_id } => Some(*execution_id),
            Self::Serialization { .. } | Self::Config(_) | Self::Store(_) => None,
        }
    }
}

/// What kind of failure a store reported, independent of the backend.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// A conditional write lost: the record was not in the expected state,
    /// or a lease belongs to someone else.
    Conflict,
    /// The record does not exist.
    NotFound,
    /// The record already exists.
    AlreadyExists,
    /// The backend cannot be reached or is busy, locked or full; retrying
    /// later may help.
    Unavailable,
    /// Stored data could not be decoded.
    Corrupt,
    /// The request itself was invalid.
    Invalid,
    /// Anything else.
    Other,
}

/// An error from a [`Store`](crate::Store) backend.
#[derive(Debug, thiserror::Error)]
#[error("store {op} failed ({kind:?}): {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    op: &'static str,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A new error of `kind` raised while doing `op`.
    pub fn new(kind: StoreErrorKind, op: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            op,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying driver error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The portable kind the engine branches on.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The store operation that failed.
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// A conflict on a conditional write.
    pub fn conflict(op: &'static str, message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Conflict, op, message)
    }

    /// The record does not exist.
    pub fn not_found(op: &'static str, message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::NotFound, op, message)
    }

    /// The same error (kind, operation, message) without its source, for
    /// answering every caller whose write shared the failed batch.
    pub fn without_source(&self) -> Self {
        Self::new(self.kind, self.op, self.message.clone())
    }

    /// Stored data that does not decode (`what` says which and why).
    pub fn corrupt(op: &'static str, what: impl std::fmt::Display) -> Self {
        Self::new(StoreErrorKind::Corrupt, op, what.to_string())
    }
}
