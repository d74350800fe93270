//! Every built-in policy decides the same on the spot (`evaluate_now`,
//! the governed call's fast path) as when awaited (`evaluate`).

use std::sync::Arc;
use std::time::Duration;

use governor_core::*;
use serde_json::{Value, json};

/// Twin policies made by `make`: one asked through `evaluate_now`, the
/// other through `evaluate`, on the same calls in the same order.
async fn same_on_the_spot<P: Policy>(make: impl Fn() -> P, calls: &[(Value, Principal)]) {
    let (now, awaited) = (make(), make());
    for (input, who) in calls {
        let ctx = PolicyContext {
            execution_id: ExecutionId::new(),
            action: "transfer",
            phase: PolicyPhase::PreExecution,
            input,
            output: None,
            principal: who,
        };
        let spot = now.evaluate_now(&ctx).expect("decides on the spot");
        let later = awaited.evaluate(&ctx).await;
        assert_eq!(spot.outcome(), later.outcome(), "{}: {input}", now.name());
        if now.kind() != PolicyKind::RateLimit {
            // A rate limit's retry-after depends on the clock.
            assert_eq!(spot, later, "{}: {input}", now.name());
        }
    }
}

#[tokio::test]
async fn built_in_policies_decide_the_same_on_the_spot_as_awaited() {
    let admin = Principal::new("ann").with_roles(["admin"]);
    let guest = Principal::new("gus");
    let calls = [
        (json!({"amount": 10}), admin.clone()),
        (json!({"amount": -1}), guest.clone()),
        (json!({"amount": 5000}), admin.clone()),
        (json!({}), guest.clone()),
    ];
    let positive = |i: &Value| i["amount"].as_i64().is_some_and(|a| a > 0);
    same_on_the_spot(|| ValidationPolicy::new().input_validator(positive), &calls).await;
    same_on_the_spot(
        || {
            ValidationPolicy::new()
                .strict(false)
                .input_validator(positive)
        },
        &calls,
    )
    .await;
    same_on_the_spot(
        || AuthorizationPolicy::new().require_roles(["admin"]),
        &calls,
    )
    .await;
    same_on_the_spot(
        || {
            AuthorizationPolicy::new()
                .require_roles(["admin"])
                .approval_on_failure(["cfo"])
        },
        &calls,
    )
    .await;
    same_on_the_spot(|| RateLimitPolicy::new(2, Duration::from_secs(60)), &calls).await;
    same_on_the_spot(|| RateLimitPolicy::new(0, Duration::from_secs(60)), &calls).await;
    same_on_the_spot(|| AuditPolicy::new().sensitive_fields(["ssn"]), &calls).await;
    same_on_the_spot(
        || {
            ApprovalPolicy::new(["cfo"])
                .auto_approve_when(|i: &Value, _: &Principal| i["amount"].as_i64() < Some(100))
        },
        &calls,
    )
    .await;
    let big = || {
        policy_fn("big", |ctx| {
            if ctx.input["amount"].as_i64() > Some(1000) {
                Decision::deny("too big")
            } else {
                Decision::Allow
            }
        })
    };
    same_on_the_spot(big, &calls).await;
    same_on_the_spot(|| big().shadow(), &calls).await;
    same_on_the_spot(|| Arc::new(big()) as Arc<dyn Policy>, &calls).await;
    let when = || big().when(Condition::compile("input.amount > 100", "test").unwrap());
    same_on_the_spot(when, &calls).await;
}

#[tokio::test]
async fn policies_that_wait_and_shared_rate_limits_are_awaited() {
    let who = Principal::new("ann");
    let input = json!({});
    let ctx = PolicyContext {
        execution_id: ExecutionId::new(),
        action: "transfer",
        phase: PolicyPhase::PreExecution,
        input: &input,
        output: None,
        principal: &who,
    };
    let waits = async_policy_fn("remote", |_| async { Decision::Allow });
    assert!(waits.evaluate_now(&ctx).is_none());
    assert!(waits.shadow().evaluate_now(&ctx).is_none());
    let shared = RateLimitPolicy::new(1, Duration::from_secs(60)).shared(Arc::new(Refusing));
    assert!(shared.evaluate_now(&ctx).is_none());
    assert_eq!(shared.evaluate(&ctx).await.outcome(), "deny");
}

/// A shared counter that is always full.
struct Refusing;

#[async_trait::async_trait]
impl RateLimitBackend for Refusing {
    fn name(&self) -> &'static str {
        "refusing"
    }
    async fn acquire(&self, _: &str, _: Limit) -> Result<Admission, RateLimitBackendError> {
        Ok(Admission::Limited {
            retry_after: Duration::from_secs(1),
        })
    }
    async fn release(&self, _: &str, _: Limit) -> Result<(), RateLimitBackendError> {
        Ok(())
    }
}
