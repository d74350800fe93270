//! Policies: the checks every governed call passes through.
//!
//! A policy looks at one call (action, bound inputs, principal and, after
//! the action ran, its output) and returns a [`Decision`]. Five built-in
//! policies cover the common jobs; anything else implements [`Policy`] or
//! wraps a closure with [`policy_fn`] / [`async_policy_fn`].

mod audit;
mod authorization;
mod closure;
mod conditional;
mod rate_limit;
mod validation;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::approval::ApprovalSpec;
use crate::execution::ExecutionId;
use crate::principal::Principal;

pub use audit::{AuditPolicy, AuditSettings};
pub use authorization::{AuthorizationPolicy, RoleMatch};
pub use closure::{AsyncFnPolicy, CallSnapshot, FnPolicy, async_policy_fn, policy_fn};
pub use conditional::When;
pub use rate_limit::{
    Admission, Limit, OnBackendError, RateLimitBackend, RateLimitBackendError, RateLimitPolicy,
    RateLimitScope,
};
pub use validation::{IntoViolations, ValidationPolicy};

#[cfg(feature = "cedar")]
pub use authorization::CedarError;

/// When a policy is evaluated relative to the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyPhase {
    /// Before the action runs, on its inputs.
    PreExecution,
    /// After the action returned, on its output.
    PostExecution,
    /// Both before and after.
    Both,
}

impl PolicyPhase {
    /// Whether a policy with this phase runs in `phase` (which is
    /// `PreExecution` or `PostExecution`).
    pub fn applies_to(self, phase: PolicyPhase) -> bool {
        self == Self::Both || self == phase
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreExecution => "pre_execution",
            Self::PostExecution => "post_execution",
            Self::Both => "both",
        }
    }
}

impl fmt::Display for PolicyPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyPhase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pre" | "pre_execution" => Ok(Self::PreExecution),
            "post" | "post_execution" => Ok(Self::PostExecution),
            "both" => Ok(Self::Both),
            other => Err(format!(
                "unknown phase `{other}` (expected pre_execution, post_execution or both)"
            )),
        }
    }
}

/// The family a policy belongs to.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// [`ValidationPolicy`].
    Validation,
    /// [`AuthorizationPolicy`].
    Authorization,
    /// [`RateLimitPolicy`].
    RateLimit,
    /// [`AuditPolicy`].
    Audit,
    /// [`ApprovalPolicy`](crate::ApprovalPolicy).
    Approval,
    /// Anything user-defined.
    Custom,
}

impl PolicyKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::Authorization => "authorization",
            Self::RateLimit => "rate_limit",
            Self::Audit => "audit",
            Self::Approval => "approval",
            Self::Custom => "custom",
        }
    }
}

/// One failing field, named by its JSON pointer path (`/amount`,
/// `/items/2/sku`; empty for the whole document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer into the inputs or output.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn join(errors: &[FieldError]) -> String {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                if e.path.is_empty() {
                    e.message.clone()
                } else {
                    format!("`{}`: {}", e.path, e.message)
                }
            })
            .collect();
        parts.join("; ")
    }
}

/// Why a policy refused a call.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// Human-readable reason.
    pub reason: String,
    /// The rule inside the policy that failed (`required_roles`, a
    /// condition's name, a Cedar policy id...).
    pub rule: Option<String>,
    /// For rate limits: when to retry.
    pub retry_after: Option<Duration>,
    /// For validation: every failing field.
    pub violations: Vec<FieldError>,
}

impl Denial {
    /// A denial with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            rule: None,
            retry_after: None,
            violations: Vec::new(),
        }
    }

    /// Names the failing rule.
    #[must_use]
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Sets the retry-after hint.
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Sets the field errors.
    #[must_use]
    pub fn violations(mut self, violations: Vec<FieldError>) -> Self {
        self.violations = violations;
        self
    }
}

/// What a policy decided about one call.
///
/// Exhaustive on purpose: a new outcome must break every `match` that has
/// to handle it.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Go ahead, but record a warning.
    Warn(String),
    /// Refuse the call.
    Deny(Denial),
    /// Ask a human first.
    RequireApproval(ApprovalSpec),
}

impl Decision {
    /// A denial with just a reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny(Denial::new(reason))
    }

    /// The outcome's name: `allow`, `warn`, `deny` or `require_approval`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Warn(_) => "warn",
            Self::Deny(_) => "deny",
            Self::RequireApproval(_) => "require_approval",
        }
    }

    /// The reason given, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Allow => None,
            Self::Warn(r) => Some(r),
            Self::Deny(d) => Some(&d.reason),
            Self::RequireApproval(s) => Some(&s.reason),
        }
    }
}

/// Everything a policy may look at for one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The execution being governed.
    pub execution_id: ExecutionId,
    /// The action's name.
    pub action: &'a str,
    /// `PreExecution` or `PostExecution`.
    pub phase: PolicyPhase,
    /// Arguments bound by parameter name (a JSON object), unredacted.
    pub input: &'a Value,
    /// The action's result, in the post-execution phase (`None` when
    /// no post-execution policy of the action reads it, see
    /// [`Policy::reads_output`]).
    pub output: Option<&'a Value>,
    /// Who is calling.
    pub principal: &'a Principal,
}

impl PolicyContext<'_> {
    /// Looks up a dotted path: `input.amount`, `principal.id`,
    /// `principal.attributes.department`, `output.status`, `action`.
    pub fn lookup(&self, path: &str) -> Option<Value> {
        let (root, rest) = path.split_once('.').unwrap_or((path, ""));
        let base = match root {
            "input" => self.input.clone(),
            "output" => self.output.cloned()?,
            "principal" | "user" => serde_json::to_value(self.principal).ok()?,
            "action" => return rest.is_empty().then(|| Value::from(self.action)),
            _ => return None,
        };
        rest.split('.')
            .filter(|s| !s.is_empty())
            .try_fold(base, |v, key| match v {
                Value::Object(mut m) => m.remove(key),
                Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.into_iter().nth(i)),
                _ => None,
            })
    }
}

/// A check on governed calls.
///
/// Implementations must be cheap to evaluate and must not block: they run
/// on every call. State they keep (counters, caches) must be bounded.
#[async_trait]
pub trait Policy: Send + Sync + 'static {
    /// The name used in decisions, events and errors.
    fn name(&self) -> &str;

    /// The family, for reporting.
    fn kind(&self) -> PolicyKind {
        PolicyKind::Custom
    }

    /// When it runs.
    fn phase(&self) -> PolicyPhase {
        PolicyPhase::PreExecution
    }

    /// In shadow mode a policy's decision is recorded but not enforced.
    fn is_shadow(&self) -> bool {
        false
    }

    /// Decides about one call.
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision;

    /// [`Policy::evaluate`] decided on the spot, for a policy that never
    /// waits (the built-in ones, unless backed by a shared store): the
    /// governed call then skips a boxed future. `None`, the default, means
    /// "call `evaluate`". When it returns a decision, it must be the one
    /// `evaluate` would return.
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        let _ = ctx;
        None
    }

    /// Called when this policy allowed a call that a later pre-execution
    /// policy then refused, so that quota-like state can be given back.
    fn release(&self, _ctx: &PolicyContext<'_>) {}

    /// Whether the policy reads [`PolicyContext::output`]. When no
    /// post-execution policy of an action does, the action's result is not
    /// parsed for them and `output` is `None`. The default is `true`.
    fn reads_output(&self) -> bool {
        true
    }

    /// Field names to redact from everything stored, emitted or logged.
    fn sensitive_fields(&self) -> &[String] {
        &[]
    }

    /// Sensitive fields whose values keep a visible part (each is also
    /// redacted: a mask only chooses what stays).
    fn masks(&self) -> &[(String, crate::redact::Mask)] {
        &[]
    }

    /// What the audit record of calls governed by this policy contains.
    fn audit_settings(&self) -> Option<&AuditSettings> {
        None
    }

    /// The approval this policy asks for when it asks (for consoles that
    /// draw approval pipelines); `None` for policies that never ask, or
    /// ask only on some failure.
    fn approval_spec(&self) -> Option<&ApprovalSpec> {
        None
    }

    /// The JSON Schema the inputs are validated against, if any (for
    /// clients checking edited arguments before sending them).
    fn input_schema(&self) -> Option<&Value> {
        None
    }

    /// Text that changes whenever the policy's settings change. It is part
    /// of the action's policy version, which every approval is bound to:
    /// a call approved under other settings is evaluated again before it
    /// runs. The default is empty (only name, kind, phase and shadow mode
    /// count); a policy whose behaviour is code cannot describe that code,
    /// so bump [`ActionBuilder::policy_version`] when it changes.
    ///
    /// [`ActionBuilder::policy_version`]: crate::ActionBuilder::policy_version
    fn fingerprint(&self) -> String {
        String::new()
    }
}

/// A policy in shadow (log-only) mode; see [`PolicyExt::shadow`].
pub struct Shadow<P>(P);

#[async_trait]
impl<P: Policy> Policy for Shadow<P> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn kind(&self) -> PolicyKind {
        self.0.kind()
    }
    fn phase(&self) -> PolicyPhase {
        self.0.phase()
    }
    fn is_shadow(&self) -> bool {
        true
    }
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        self.0.evaluate(ctx).await
    }
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        self.0.evaluate_now(ctx)
    }
    fn release(&self, ctx: &PolicyContext<'_>) {
        self.0.release(ctx);
    }
    fn reads_output(&self) -> bool {
        self.0.reads_output()
    }
    fn sensitive_fields(&self) -> &[String] {
        self.0.sensitive_fields()
    }
    fn masks(&self) -> &[(String, crate::redact::Mask)] {
        self.0.masks()
    }
    fn audit_settings(&self) -> Option<&AuditSettings> {
        self.0.audit_settings()
    }
    fn approval_spec(&self) -> Option<&ApprovalSpec> {
        self.0.approval_spec()
    }
    fn input_schema(&self) -> Option<&Value> {
        self.0.input_schema()
    }
    fn fingerprint(&self) -> String {
        self.0.fingerprint()
    }
}

/// Shared policies (`Arc<dyn Policy>`, as loaded from files) are policies
/// too, so they can be wrapped (e.g. in [`Shadow`]) like any other.
#[async_trait]
impl<P: Policy + ?Sized> Policy for Arc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn kind(&self) -> PolicyKind {
        (**self).kind()
    }
    fn phase(&self) -> PolicyPhase {
        (**self).phase()
    }
    fn is_shadow(&self) -> bool {
        (**self).is_shadow()
    }
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        (**self).evaluate(ctx).await
    }
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        (**self).evaluate_now(ctx)
    }
    fn release(&self, ctx: &PolicyContext<'_>) {
        (**self).release(ctx);
    }
    fn reads_output(&self) -> bool {
        (**self).reads_output()
    }
    fn sensitive_fields(&self) -> &[String] {
        (**self).sensitive_fields()
    }
    fn masks(&self) -> &[(String, crate::redact::Mask)] {
        (**self).masks()
    }
    fn audit_settings(&self) -> Option<&AuditSettings> {
        (**self).audit_settings()
    }
    fn approval_spec(&self) -> Option<&ApprovalSpec> {
        (**self).approval_spec()
    }
    fn input_schema(&self) -> Option<&Value> {
        (**self).input_schema()
    }
    fn fingerprint(&self) -> String {
        (**self).fingerprint()
    }
}

/// Adapters available on every policy.
pub trait PolicyExt: Policy + Sized {
    /// Records what this policy would decide without enforcing it.
    fn shadow(self) -> Shadow<Self> {
        Shadow(self)
    }

    /// Applies this policy only to calls for which `condition` holds.
    fn when(self, condition: crate::condition::Condition) -> When<Self> {
        When::new(self, condition)
    }

    /// Boxes the policy for a policy list.
    fn boxed(self) -> Arc<dyn Policy> {
        Arc::new(self)
    }
}

impl<P: Policy> PolicyExt for P {}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub(crate) fn ctx<'a>(input: &'a Value, principal: &'a Principal) -> PolicyContext<'a> {
        PolicyContext {
            execution_id: ExecutionId::new(),
            action: "transfer",
            phase: PolicyPhase::PreExecution,
            input,
            output: None,
            principal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_reads_inputs_and_principal() {
        let input = json!({"amount": 5, "to": {"iban": "X"}, "list": [1, 2]});
        let p = Principal::new("alice").with_attribute("dept", "ops");
        let ctx = test_support::ctx(&input, &p);
        assert_eq!(ctx.lookup("input.amount"), Some(json!(5)));
        assert_eq!(ctx.lookup("input.to.iban"), Some(json!("X")));
        assert_eq!(ctx.lookup("input.list.1"), Some(json!(2)));
        assert_eq!(ctx.lookup("principal.id"), Some(json!("alice")));
        assert_eq!(ctx.lookup("user.attributes.dept"), Some(json!("ops")));
        assert_eq!(ctx.lookup("input.missing"), None);
        assert_eq!(ctx.lookup("action"), Some(json!("transfer")));
    }

    #[test]
    fn phases_parse_with_seed_spellings() {
        assert_eq!(
            "pre".parse::<PolicyPhase>().unwrap(),
            PolicyPhase::PreExecution
        );
        assert_eq!(
            "post_execution".parse::<PolicyPhase>().unwrap(),
            PolicyPhase::PostExecution
        );
        assert!("sometimes".parse::<PolicyPhase>().is_err());
        assert!(PolicyPhase::Both.applies_to(PolicyPhase::PostExecution));
        assert!(!PolicyPhase::PreExecution.applies_to(PolicyPhase::PostExecution));
    }
}
