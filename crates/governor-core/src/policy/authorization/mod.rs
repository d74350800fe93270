//! Role, permission and attribute based authorization.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Decision, Denial, Policy, PolicyContext, PolicyKind};
use crate::approval::ApprovalSpec;

#[cfg(feature = "cedar")]
mod cedar;
#[cfg(feature = "cedar")]
pub use cedar::CedarError;

type Condition = Arc<dyn Fn(&PolicyContext<'_>) -> bool + Send + Sync>;
type Authorizer = Arc<dyn Fn(&PolicyContext<'_>) -> Result<(), String> + Send + Sync>;

/// How required roles are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoleMatch {
    /// The principal needs at least one of the roles (the seed's behaviour).
    #[default]
    Any,
    /// The principal needs every role.
    All,
}

/// Decides whether the calling principal may perform the action.
///
/// Checks run in order — principal present, roles, permissions, ABAC
/// conditions, the custom authorizer, Cedar policies — and the first that
/// fails names itself as the denial's rule. With
/// [`approval_on_failure`](Self::approval_on_failure) a failure asks a human
/// instead of denying.
#[derive(Clone)]
pub struct AuthorizationPolicy {
    name: String,
    roles: Vec<String>,
    role_match: RoleMatch,
    permissions: Vec<String>,
    allow_anonymous: bool,
    conditions: Vec<(String, Condition)>,
    /// CEL rules' text, for the fingerprint.
    rule_sources: Vec<String>,
    authorizer: Option<Authorizer>,
    on_failure: Option<Vec<String>>,
    #[cfg(feature = "cedar")]
    cedar: Option<Arc<cedar::CedarRules>>,
}

impl Default for AuthorizationPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthorizationPolicy {
    /// A policy that only requires a non-anonymous principal.
    pub fn new() -> Self {
        Self {
            name: "AuthorizationPolicy".into(),
            roles: Vec::new(),
            role_match: RoleMatch::Any,
            permissions: Vec::new(),
            allow_anonymous: false,
            conditions: Vec::new(),
            rule_sources: Vec::new(),
            authorizer: None,
            on_failure: None,
            #[cfg(feature = "cedar")]
            cedar: None,
        }
    }

    /// Sets the policy's name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Requires roles (any of them, unless [`RoleMatch::All`]).
    #[must_use]
    pub fn require_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// How roles are matched.
    #[must_use]
    pub fn role_match(mut self, role_match: RoleMatch) -> Self {
        self.role_match = role_match;
        self
    }

    /// Requires every one of these permissions.
    #[must_use]
    pub fn require_permissions<I, S>(mut self, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions
            .extend(permissions.into_iter().map(Into::into));
        self
    }

    /// Lets calls without a principal through the principal check (roles
    /// and permissions still apply).
    #[must_use]
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.allow_anonymous = allow;
        self
    }

    /// Adds a named ABAC rule over the principal and the inputs.
    #[must_use]
    pub fn condition<F>(mut self, name: impl Into<String>, rule: F) -> Self
    where
        F: Fn(&PolicyContext<'_>) -> bool + Send + Sync + 'static,
    {
        self.conditions.push((name.into(), Arc::new(rule)));
        self
    }

    /// Adds a named ABAC rule written in CEL (the policy files'
    /// `conditions`). A rule that cannot be evaluated (a missing input
    /// field) is not satisfied, so the call is denied.
    #[must_use]
    pub fn condition_cel(
        mut self,
        name: impl Into<String>,
        rule: crate::condition::Condition,
    ) -> Self {
        let name = name.into();
        self.rule_sources.push(format!("{name}: {}", rule.source()));
        self.condition(name, move |ctx| {
            rule.evaluate(ctx).unwrap_or_else(|e| {
                tracing::warn!(action = ctx.action, "{e}; the rule is not satisfied");
                false
            })
        })
    }

    /// Sets a custom authorizer; `Err(reason)` denies.
    #[must_use]
    pub fn authorizer<F>(mut self, f: F) -> Self
    where
        F: Fn(&PolicyContext<'_>) -> Result<(), String> + Send + Sync + 'static,
    {
        self.authorizer = Some(Arc::new(f));
        self
    }

    /// On failure, ask one of `approvers` instead of denying (the seed's
    /// `require_approval_on_failure`).
    #[must_use]
    pub fn approval_on_failure<I, S>(mut self, approvers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.on_failure = Some(approvers.into_iter().map(Into::into).collect());
        self
    }

    /// Adds Cedar policies; a call is allowed only if Cedar permits it.
    ///
    /// The request Cedar sees: principal `Governor::Principal::"<id>"` with
    /// attributes `roles`, `permissions`, `tenant` and `attributes`; action
    /// `Governor::Action::"<action name>"`; resource
    /// `Governor::Action::"<action name>"`; context = the bound inputs.
    #[cfg(feature = "cedar")]
    pub fn cedar(mut self, policies: &str) -> Result<Self, CedarError> {
        self.cedar = Some(Arc::new(cedar::CedarRules::parse(policies)?));
        Ok(self)
    }

    /// The decision: allow, or the first failing rule's denial (or an
    /// approval request, with `require_approval_on_failure`).
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        match (self.check(ctx), &self.on_failure) {
            (Ok(()), _) => Decision::Allow,
            (Err(denial), None) => Decision::Deny(denial),
            (Err(denial), Some(approvers)) => Decision::RequireApproval(
                ApprovalSpec::new(self.name.clone(), approvers.clone())
                    .with_reason(format!("{}, approval required", denial.reason)),
            ),
        }
    }

    fn check(&self, ctx: &PolicyContext<'_>) -> Result<(), Denial> {
        let who = ctx.principal;
        if who.is_anonymous() && !self.allow_anonymous {
            return Err(
                Denial::new("no principal: the call was made anonymously").rule("principal")
            );
        }
        if !self.roles.is_empty() {
            let ok = match self.role_match {
                RoleMatch::Any => self.roles.iter().any(|r| who.has_role(r)),
                RoleMatch::All => self.roles.iter().all(|r| who.has_role(r)),
            };
            if !ok {
                let want = if self.role_match == RoleMatch::Any {
                    "one of"
                } else {
                    "all of"
                };
                return Err(Denial::new(format!(
                    "principal `{}` lacks required roles: needs {want} [{}]",
                    who.id,
                    self.roles.join(", ")
                ))
                .rule("required_roles"));
            }
        }
        let missing: Vec<&str> = self
            .permissions
            .iter()
            .filter(|p| !who.has_permission(p))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Denial::new(format!(
                "principal `{}` lacks required permissions: [{}]",
                who.id,
                missing.join(", ")
            ))
            .rule("required_permissions"));
        }
        for (name, rule) in &self.conditions {
            if !rule(ctx) {
                return Err(
                    Denial::new(format!("condition `{name}` is not satisfied")).rule(name.clone())
                );
            }
        }
        if let Some(auth) = &self.authorizer {
            auth(ctx).map_err(|reason| {
                Denial::new(format!("custom authorizer denied access: {reason}"))
                    .rule("custom_authorizer")
            })?;
        }
        #[cfg(feature = "cedar")]
        if let Some(cedar) = &self.cedar {
            cedar.authorize(ctx)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Policy for AuthorizationPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> PolicyKind {
        PolicyKind::Authorization
    }

    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        self.decide(ctx)
    }
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        Some(self.decide(ctx))
    }
    fn fingerprint(&self) -> String {
        let conditions: Vec<&str> = self.conditions.iter().map(|(n, _)| n.as_str()).collect();
        #[cfg(feature = "cedar")]
        let cedar = self.cedar.as_ref().map(|c| c.fingerprint());
        #[cfg(not(feature = "cedar"))]
        let cedar: Option<String> = None;
        format!(
            "roles {:?} {:?} permissions {:?} anonymous {} conditions {conditions:?} {:?} authorizer {} \
             on_failure {:?} cedar {cedar:?}",
            self.roles,
            self.role_match,
            self.permissions,
            self.allow_anonymous,
            self.rule_sources,
            self.authorizer.is_some(),
            self.on_failure,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use crate::policy::test_support::ctx;
    use serde_json::json;

    fn rule_of(d: Decision) -> String {
        match d {
            Decision::Deny(d) => d.rule.unwrap_or_default(),
            other => panic!("expected deny, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn roles_any_and_all() {
        let input = json!({});
        let alice = Principal::new("alice").with_roles(["finance"]);
        let any = AuthorizationPolicy::new().require_roles(["admin", "finance"]);
        assert_eq!(any.evaluate(&ctx(&input, &alice)).await, Decision::Allow);
        let all = any.clone().role_match(RoleMatch::All);
        assert_eq!(
            rule_of(all.evaluate(&ctx(&input, &alice)).await),
            "required_roles"
        );
    }

    #[tokio::test]
    async fn permissions_are_all_of_and_named_when_missing() {
        let input = json!({});
        let bob = Principal::new("bob").with_permissions(["payment.write"]);
        let p = AuthorizationPolicy::new()
            .require_permissions(["payment.write", "transaction.approve"]);
        let Decision::Deny(d) = p.evaluate(&ctx(&input, &bob)).await else {
            panic!()
        };
        assert_eq!(d.rule.as_deref(), Some("required_permissions"));
        assert!(d.reason.contains("transaction.approve") && !d.reason.contains("payment.write"));
    }

    #[tokio::test]
    async fn anonymous_is_denied_unless_allowed() {
        let input = json!({});
        let anon = Principal::anonymous();
        assert_eq!(
            rule_of(
                AuthorizationPolicy::new()
                    .evaluate(&ctx(&input, &anon))
                    .await
            ),
            "principal"
        );
        let open = AuthorizationPolicy::new().allow_anonymous(true);
        assert_eq!(open.evaluate(&ctx(&input, &anon)).await, Decision::Allow);
    }

    #[tokio::test]
    async fn abac_condition_and_custom_authorizer_name_the_failing_rule() {
        let p = AuthorizationPolicy::new()
            .condition("same_department", |c| {
                c.lookup("principal.attributes.department") == c.lookup("input.department")
            })
            .authorizer(|c| {
                if c.input["amount"].as_i64() < Some(100) {
                    Ok(())
                } else {
                    Err("too big".into())
                }
            });
        let carol = Principal::new("carol").with_attribute("department", "ops");
        let same = json!({"department": "ops", "amount": 5});
        assert_eq!(p.evaluate(&ctx(&same, &carol)).await, Decision::Allow);
        let other = json!({"department": "sales", "amount": 5});
        assert_eq!(
            rule_of(p.evaluate(&ctx(&other, &carol)).await),
            "same_department"
        );
        let big = json!({"department": "ops", "amount": 500});
        assert_eq!(
            rule_of(p.evaluate(&ctx(&big, &carol)).await),
            "custom_authorizer"
        );
    }

    #[tokio::test]
    async fn failure_can_require_approval_instead() {
        let p = AuthorizationPolicy::new()
            .require_roles(["admin"])
            .approval_on_failure(["sre-lead"]);
        let input = json!({});
        let dave = Principal::new("dave");
        let Decision::RequireApproval(spec) = p.evaluate(&ctx(&input, &dave)).await else {
            panic!()
        };
        assert_eq!(spec.approvers, vec!["sre-lead"]);
        assert!(spec.reason.contains("approval required"));
    }
}
