//! The governor engine: every risky action an agent takes passes through
//! here, is checked against policy, may wait for a human, and is recorded
//! durably with a tamper-evident audit trail.
//!
//! Most users depend on the `agent-governor` facade, which adds the
//! `#[govern]` attribute and the storage backends. This crate holds the
//! pieces integrators implement against: [`Store`], [`Policy`] and the
//! execution model.
//!
//! ```
//! use std::time::Duration;
//! use governor_core::{Args, Governor, GovernError, MemoryStore, Principal, RateLimitPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), GovernError> {
//! let governor = Governor::builder().store(MemoryStore::new()).build()?;
//! let transfer = governor
//!     .action("transfer")
//!     .policy(RateLimitPolicy::new(10, Duration::from_secs(60)).per_principal())
//!     .build()?;
//!
//! let receipt: String = transfer
//!     .run_as(Principal::new("agent-7"), Args::new().arg("amount", &250), || async {
//!         Ok::<_, GovernError>("sent".to_string())
//!     })
//!     .await?;
//! assert_eq!(receipt, "sent");
//! # Ok(())
//! # }
//! ```

mod action;
mod approval;
mod audit;
mod binding;
mod brief;
mod channel;
pub mod condition;
pub mod config;
mod decide;
mod decisions;
mod deliver;
pub mod display;
mod error;
mod event;
mod execution;
mod expiry;
mod external;
mod governor;
mod grant;
mod ids;
mod json;
mod lifecycle;
#[doc(hidden)]
pub mod macro_support;
mod outbox;
mod pause;
mod per_thread;
pub mod policy;
mod principal;
mod redact;
mod resume;
mod seal;
pub mod selector;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use action::{
    Action, ActionBuilder, Args, BoxFuture, Call, Hook, HookContext, ResumeFn, StateCallback,
};
pub use approval::{
    ApprovalPolicy, ApprovalRequest, ApprovalSpec, ApprovalStage, GrantRules, LinkMode, NotifySpec,
    OnExpiry, StageDecision, Trigger,
};
pub use audit::{
    AuditEntry, AuditRecord, ChainError, DecisionRecord, EVICTED_UNREAD_HASH, GENESIS_HASH,
    LogCheck, chain_hash, check_audit_log, read_audit_log, verify_chain,
};
pub use brief::{Brief, StageBrief};
pub use channel::{ApprovalChannel, ApprovalNotice, CallbackChannel, CliChannel};
pub use condition::{Condition, ConditionError};
pub use config::{
    ConfigError, LoadOptions, PolicyFile, load_policies_from_file, load_policies_from_value,
};
pub use decide::links::{ApprovalLink, LINK_MAX_AGE, LinkError, LinkKey, OpenLink, VIA_LINK};
pub use decide::{ApprovalError, Verdict};
pub use deliver::{DeliveryError, DeliveryTarget, Notice, RetryPolicy, waiting_approvers};
pub use display::{Display, DisplayError, DisplayField};
pub use error::{GovernError, Result, StoreError, StoreErrorKind};
pub use event::{Event, EventBus, EventKind, EventRecord, EventStream, HandlerId};
pub use execution::{
    Checkpoint, Execution, ExecutionId, ExecutionStatus, Failure, Lease, Snapshot, StatusSet,
    UnknownStatus,
};
pub use expiry::EXPIRY_APPROVER;
pub use external::{Admitted, CompleteError, DEFAULT_REPORT_WITHIN, EXTERNAL_RUNNER};
pub use governor::{Governor, GovernorBuilder};
pub use grant::{GRANTS_PERMISSION, Grant, MAX_GRANTS_LISTED, REVOKE_GRANT_ACTION};
pub use json::Json;
pub use outbox::{
    DeliveryOutcome, DeliveryState, Notification, NotificationKind, NotificationQuery,
};
pub use pause::{LIFT_ACTION, PAUSE_ACTION, PAUSE_PERMISSION, Pause, PauseMode};
pub use policy::{
    Admission, AuditPolicy, AuthorizationPolicy, Decision, Denial, FieldError, Limit,
    OnBackendError, Policy, PolicyContext, PolicyExt, PolicyKind, PolicyPhase, RateLimitBackend,
    RateLimitBackendError, RateLimitPolicy, ValidationPolicy, async_policy_fn, policy_fn,
};
pub use principal::Principal;
pub use redact::{Mask, REDACTED, Redactor};
pub use resume::ResumeError;
pub use seal::SealKey;
pub use selector::{ActionSelector, SelectorError};
pub use store::{Change, Creation, EventQuery, ExecutionQuery, MemoryStore, Store, Transition};

/// The crate README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
