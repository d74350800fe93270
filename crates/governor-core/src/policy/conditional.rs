//! A policy that applies only when a condition holds (`when:` in policy
//! files).

use async_trait::async_trait;

use super::{AuditSettings, Decision, Policy, PolicyContext, PolicyKind, PolicyPhase};
use crate::condition::Condition;

/// Runs the wrapped policy only for calls where the condition holds; other
/// calls pass it untouched (a rate limit is not charged, an approval not
/// asked). A condition that cannot be evaluated (a missing input field)
/// counts as holding: the policy applies, so a broken condition never
/// switches governance off. See [`PolicyExt::when`](super::PolicyExt::when).
pub struct When<P> {
    inner: P,
    condition: Condition,
}

impl<P> When<P> {
    pub(super) fn new(inner: P, condition: Condition) -> Self {
        Self { inner, condition }
    }

    /// The condition.
    pub fn condition(&self) -> &Condition {
        &self.condition
    }

    /// `decision`, naming this condition as what made it ask (unless the
    /// inner policy named a narrower one).
    fn triggered(&self, decision: Decision) -> Decision {
        match decision {
            Decision::RequireApproval(mut spec) => {
                if spec.trigger.is_none() {
                    spec.trigger = Some(crate::approval::Trigger::of(&self.condition, false));
                }
                Decision::RequireApproval(spec)
            }
            other => other,
        }
    }

    fn holds(&self, ctx: &PolicyContext<'_>) -> bool {
        self.condition.evaluate(ctx).unwrap_or_else(|e| {
            tracing::warn!(action = ctx.action, "{e}; the policy applies");
            true
        })
    }
}

#[async_trait]
impl<P: Policy> Policy for When<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> PolicyKind {
        self.inner.kind()
    }
    fn phase(&self) -> PolicyPhase {
        self.inner.phase()
    }
    fn is_shadow(&self) -> bool {
        self.inner.is_shadow()
    }
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        if self.holds(ctx) {
            self.triggered(self.inner.evaluate(ctx).await)
        } else {
            Decision::Allow
        }
    }
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        if self.holds(ctx) {
            self.inner.evaluate_now(ctx).map(|d| self.triggered(d))
        } else {
            Some(Decision::Allow)
        }
    }
    fn release(&self, ctx: &PolicyContext<'_>) {
        if self.holds(ctx) {
            self.inner.release(ctx);
        }
    }
    fn sensitive_fields(&self) -> &[String] {
        // Redaction never depends on a condition: a field is sensitive in
        // every call.
        self.inner.sensitive_fields()
    }
    fn masks(&self) -> &[(String, crate::redact::Mask)] {
        self.inner.masks()
    }
    fn audit_settings(&self) -> Option<&AuditSettings> {
        self.inner.audit_settings()
    }
    fn fingerprint(&self) -> String {
        format!(
            "{} when {}",
            self.inner.fingerprint(),
            self.condition.source()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use crate::policy::test_support::ctx;
    use crate::policy::{PolicyExt, RateLimitPolicy};
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test]
    async fn applies_only_when_the_condition_holds() {
        let cond = Condition::compile_pre("input.amount > 100", "dev").unwrap();
        let limit = RateLimitPolicy::new(1, Duration::from_secs(60)).when(cond);
        let who = Principal::new("a");
        let small = json!({"amount": 5});
        let big = json!({"amount": 500});
        // Small calls are not charged.
        for _ in 0..3 {
            assert_eq!(limit.evaluate(&ctx(&small, &who)).await, Decision::Allow);
        }
        assert_eq!(limit.evaluate(&ctx(&big, &who)).await, Decision::Allow);
        assert!(matches!(
            limit.evaluate(&ctx(&big, &who)).await,
            Decision::Deny(_)
        ));
        // A condition that cannot be evaluated applies the policy.
        assert!(matches!(
            limit.evaluate(&ctx(&json!({}), &who)).await,
            Decision::Deny(_)
        ));
        assert!(limit.fingerprint().ends_with("when input.amount > 100"));
    }
}
