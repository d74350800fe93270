//! # agent-governor
//!
//! Governance for AI agents and other autonomous code: every risky action
//! passes through policies, may wait for a human decision, and is recorded
//! durably with a tamper-evident audit trail.
//!
//! ```
//! use agent_governor::{govern, AuditPolicy, GovernError, Principal, RateLimitPolicy};
//! use std::time::Duration;
//!
//! #[govern(policies = [
//!     RateLimitPolicy::new(100, Duration::from_secs(60)).per_principal(),
//!     AuditPolicy::new().sensitive_fields(["account"]).compliance_tags(["SOC2"]),
//! ])]
//! async fn process_payment(amount: f64, account: String) -> serde_json::Value {
//!     serde_json::json!({"status": "success", "amount": amount})
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), GovernError> {
//! let result = Principal::new("agent-7")
//!     .scope(process_payment(250.0, "ACC123".into()))
//!     .await?;
//! assert_eq!(result["status"], "success");
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `sqlite` | yes | [`sqlite::SqliteStore`], the embedded durable store |
//! | `cedar` | no | Cedar policies in [`AuthorizationPolicy`] |
//! | `http` | no | `http`: the approval and executions HTTP API (axum) |
//!
//! ## `#[govern(...)]`
//!
//! On an `async fn` whose arguments are `serde::Serialize`:
//!
//! | argument | meaning |
//! |---|---|
//! | `policies = [p1, p2]` | policies in evaluation order (values, `Result`s of them, or `Arc<dyn Policy>`); or `policies = expr` for a `Vec<Arc<dyn Policy>>` |
//! | `pre = [hook, ...]`, `post = [hook, ...]` | [`Hook`]s run before policies and after the action |
//! | `capture_state = bool` | save snapshots before and after the action (default: the governor's, `true`) |
//! | `governor = expr` | the [`Governor`] (or `&Governor`) to record into; default [`Governor::global`] |
//! | `store = expr` | shorthand for a governor on this [`Store`] |
//! | `name = "..."` | the action name (default: the function's name; for `impl` blocks, a prefix replacing the type name) |
//! | `context = expr` | the caller: a [`Principal`] or `Option<Principal>`, evaluated per call (it may use the arguments); default: the task-local [`Principal::scope`] |
//! | `on_state_saved = closure` | `Fn(ExecutionId, &serde_json::Value)`, called when state is saved |
//! | `display = expr` | a [`Display`]: how requests read to approvers (`Display::titled("Wire {amount:currency(EUR)} to {to}")`) |
//! | `resumable = false` | do not register the function for resuming (needed when its body is not `Send`) |
//! | `methods = ["a", "b"]` | on an `impl` block: which methods (default: every `pub async fn`) |
//! | `crate = path` | where `agent_governor` is, if renamed |
//!
//! A function returning `Result<T, E>` with `E: From<GovernError>` keeps
//! its signature; any other return type `T` becomes
//! `Result<T, GovernError>`. Policies see arguments by parameter name
//! (`amount`, not `args[0]`). On an `impl` block, each selected method is
//! the action `Type.method`; `self` is recorded only if it is `Serialize`.
//!
//! A free function is registered for resuming by its action name when the
//! program is linked: [`Governor::resume`] and resume workers run approved
//! executions through its body, on any instance, even one that never
//! called it. That needs owned arguments that are also
//! `serde::Deserialize` (a function with a `&str` argument, generics, or a
//! non-`Deserialize` argument is simply not resumable) and a `Send` body
//! (a compile error names `resumable = false` otherwise). Methods are not
//! registered (there is no `self` to resume with); register them with
//! [`ActionBuilder::resumable`].
//!
//! ## Lifecycle
//!
//! pre-actions → pre-execution policies → approval → snapshot → the action
//! → snapshot → post-execution policies → post-actions. A post-execution
//! policy that fails marks the execution failed and withholds the result,
//! **but the action's side effects have already happened**. A call whose
//! future is dropped is recorded as cancelled.

pub use governor_core::*;
pub use governor_macros::govern;

/// The SQLite store: one file, WAL, group commit (feature `sqlite`, on by
/// default).
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use governor_sqlite::*;
}

/// The PostgreSQL store for several instances, and a rate-limit backend
/// on the same database (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use governor_postgres::*;
}

/// The MongoDB store, the original's production backend (feature
/// `mongodb`).
#[cfg(feature = "mongodb")]
pub mod mongodb {
    pub use governor_mongodb::*;
}

/// A Redis rate-limit backend: one limit across every instance (feature
/// `redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use governor_redis::*;
}

/// The HTTP API: an axum `Router` with bearer-token authentication
/// (feature `http`).
#[cfg(feature = "http")]
pub mod http {
    pub use governor_http::*;
}

/// Delivery targets for the notification outbox: signed webhooks
/// (feature `notify`).
#[cfg(feature = "notify")]
pub mod notify {
    pub use governor_notify::*;
}

/// The names most programs need.
pub mod prelude {
    pub use governor_core::{
        ApprovalPolicy, Args, AuditPolicy, AuthorizationPolicy, Decision, ExecutionId,
        ExecutionStatus, GovernError, Governor, MemoryStore, Policy, PolicyExt, Principal,
        RateLimitPolicy, Store, ValidationPolicy, policy_fn,
    };
    pub use governor_macros::govern;
}

#[doc(hidden)]
pub mod __private {
    pub use governor_core::macro_support::*;
    pub use governor_core::{Action, Args, Call, GovernError};
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
