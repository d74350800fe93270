//! Policies from closures.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Decision, Policy, PolicyContext, PolicyPhase};
use crate::execution::ExecutionId;
use crate::principal::Principal;

/// A policy backed by a synchronous closure; see [`policy_fn`].
pub struct FnPolicy<F> {
    name: String,
    phase: PolicyPhase,
    check: F,
}

/// Builds a pre-execution policy from a closure.
///
/// ```
/// use governor_core::{policy_fn, Decision};
/// let weekdays_only = policy_fn("no_weekend_payments", |ctx| {
///     if ctx.input["amount"].as_f64().unwrap_or(0.0) > 1_000.0 {
///         Decision::deny("large payments need a weekday")
///     } else {
///         Decision::Allow
///     }
/// });
/// ```
pub fn policy_fn<F>(name: impl Into<String>, check: F) -> FnPolicy<F>
where
    F: Fn(&PolicyContext<'_>) -> Decision + Send + Sync + 'static,
{
    FnPolicy {
        name: name.into(),
        phase: PolicyPhase::PreExecution,
        check,
    }
}

impl<F> FnPolicy<F> {
    /// Sets the phase.
    #[must_use]
    pub fn in_phase(mut self, phase: PolicyPhase) -> Self {
        self.phase = phase;
        self
    }
}

#[async_trait]
impl<F> Policy for FnPolicy<F>
where
    F: Fn(&PolicyContext<'_>) -> Decision + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn phase(&self) -> PolicyPhase {
        self.phase
    }
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        (self.check)(ctx)
    }
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        Some((self.check)(ctx))
    }
}

/// An owned copy of a call, handed to asynchronous closure policies.
#[derive(Debug, Clone)]
pub struct CallSnapshot {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The action's name.
    pub action: String,
    /// The phase being evaluated.
    pub phase: PolicyPhase,
    /// The bound inputs.
    pub input: Value,
    /// The output, after execution.
    pub output: Option<Value>,
    /// The caller.
    pub principal: Arc<Principal>,
}

/// A policy backed by an asynchronous closure; see [`async_policy_fn`].
pub struct AsyncFnPolicy<F> {
    name: String,
    phase: PolicyPhase,
    check: F,
}

/// Builds a pre-execution policy from an async closure (for checks that
/// call out, e.g. a fraud score service).
pub fn async_policy_fn<F, Fut>(name: impl Into<String>, check: F) -> AsyncFnPolicy<F>
where
    F: Fn(CallSnapshot) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    AsyncFnPolicy {
        name: name.into(),
        phase: PolicyPhase::PreExecution,
        check,
    }
}

impl<F> AsyncFnPolicy<F> {
    /// Sets the phase.
    #[must_use]
    pub fn in_phase(mut self, phase: PolicyPhase) -> Self {
        self.phase = phase;
        self
    }
}

#[async_trait]
impl<F, Fut> Policy for AsyncFnPolicy<F>
where
    F: Fn(CallSnapshot) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn phase(&self) -> PolicyPhase {
        self.phase
    }
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        let snapshot = CallSnapshot {
            execution_id: ctx.execution_id,
            action: ctx.action.to_owned(),
            phase: ctx.phase,
            input: ctx.input.clone(),
            output: ctx.output.cloned(),
            principal: Arc::new(ctx.principal.clone()),
        };
        (self.check)(snapshot).await
    }
}
