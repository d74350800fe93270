//! Cedar policies inside an [`AuthorizationPolicy`](super::AuthorizationPolicy).

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use serde_json::{Map, Value, json};

use crate::policy::{Denial, PolicyContext};

/// Cedar policy text that failed to parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid Cedar policies: {0}")]
pub struct CedarError(String);

pub(super) struct CedarRules {
    policies: PolicySet,
    authorizer: Authorizer,
}

impl CedarRules {
    pub(super) fn parse(text: &str) -> Result<Self, CedarError> {
        let policies = PolicySet::from_str(text).map_err(|e| CedarError(e.to_string()))?;
        Ok(Self {
            policies,
            authorizer: Authorizer::new(),
        })
    }

    /// The policy text as Cedar prints it.
    pub(super) fn fingerprint(&self) -> String {
        self.policies.to_string()
    }

    pub(super) fn authorize(&self, ctx: &PolicyContext<'_>) -> Result<(), Denial> {
        let fail = |what: &str, e: String| Denial::new(format!("cedar {what}: {e}")).rule("cedar");
        let principal =
            uid("Governor::Principal", &ctx.principal.id).map_err(|e| fail("principal", e))?;
        let action = uid("Governor::Action", ctx.action).map_err(|e| fail("action", e))?;
        let p = ctx.principal;
        let entities = json!([{
            "uid": {"type": "Governor::Principal", "id": p.id},
            "attrs": {
                "roles": p.roles,
                "permissions": p.permissions,
                "tenant": p.tenant.clone().unwrap_or_default(),
                "attributes": to_cedar(&Value::Object(p.attributes.clone())),
            },
            "parents": []
        }]);
        let entities = Entities::from_json_value(entities, None)
            .map_err(|e| fail("entities", e.to_string()))?;
        let context = Context::from_json_value(to_cedar(ctx.input), None)
            .map_err(|e| fail("context", e.to_string()))?;
        let request = Request::new(principal, action.clone(), action, context, None)
            .map_err(|e| fail("request", e.to_string()))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        match response.decision() {
            Decision::Allow => Ok(()),
            Decision::Deny => {
                // Name policies by their `@id("...")` annotation when
                // they have one; Cedar's own ids are positional.
                let reasons: Vec<String> = response
                    .diagnostics()
                    .reason()
                    .map(|id| {
                        self.policies
                            .policy(id)
                            .and_then(|p| p.annotation("id"))
                            .map_or_else(|| id.to_string(), str::to_owned)
                    })
                    .collect();
                let errors: Vec<String> = response
                    .diagnostics()
                    .errors()
                    .map(ToString::to_string)
                    .collect();
                let rule = if reasons.is_empty() {
                    "cedar".to_owned()
                } else {
                    format!("cedar:{}", reasons.join(","))
                };
                let why = match (reasons.is_empty(), errors.is_empty()) {
                    (false, _) => format!("forbidden by Cedar policy {}", reasons.join(", ")),
                    (true, false) => format!("Cedar evaluation errors: {}", errors.join("; ")),
                    (true, true) => "no Cedar policy permits this call".to_owned(),
                };
                Err(Denial::new(why).rule(rule))
            }
        }
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    let quoted = serde_json::to_string(id).map_err(|e| e.to_string())?;
    EntityUid::from_str(&format!("{kind}::{quoted}")).map_err(|e| e.to_string())
}

/// Cedar has no null and no floats: nulls are dropped and non-integer
/// numbers become `decimal` values (4 fractional digits).
fn to_cedar(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), to_cedar(v)))
                .collect();
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().filter(|v| !v.is_null()).map(to_cedar).collect()),
        Value::Number(n) if n.as_i64().is_none() => {
            let f = n.as_f64().unwrap_or(0.0);
            json!({"__extn": {"fn": "decimal", "arg": format!("{f:.4}")}})
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::test_support::ctx;
    use crate::{AuthorizationPolicy, Decision as D, Policy, Principal};

    #[tokio::test]
    async fn cedar_permits_and_names_the_forbidding_policy() {
        let p = AuthorizationPolicy::new()
            .cedar(
                r#"
                @id("finance-can-pay")
                permit(principal, action == Governor::Action::"pay", resource)
                when { principal.roles.contains("finance") };
                @id("cap")
                forbid(principal, action, resource) when { context.amount > 10000 };
                "#,
            )
            .unwrap();
        let fin = Principal::new("f").with_roles(["finance"]);
        let small = serde_json::json!({"amount": 50, "memo": null, "rate": 1.5});
        let mut c = ctx(&small, &fin);
        c.action = "pay";
        assert_eq!(p.evaluate(&c).await, D::Allow);
        let big = serde_json::json!({"amount": 50000});
        let mut c = ctx(&big, &fin);
        c.action = "pay";
        let D::Deny(d) = p.evaluate(&c).await else {
            panic!()
        };
        assert_eq!(d.rule.as_deref(), Some("cedar:cap"));
        let other = Principal::new("o");
        let mut c = ctx(&small, &other);
        c.action = "pay";
        assert!(matches!(p.evaluate(&c).await, D::Deny(_)));
    }

    #[test]
    fn bad_cedar_text_is_an_error() {
        assert!(AuthorizationPolicy::new().cedar("permit(").is_err());
    }
}
