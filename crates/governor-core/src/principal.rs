//! Who is making a governed call.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

tokio::task_local! {
    static CURRENT: Arc<Principal>;
}

/// The identity a governed call is made on behalf of: an agent, a user, a
/// service. Policies read it; every execution records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable identifier (user id, agent id, email).
    pub id: String,
    /// Roles held, e.g. `admin`, `finance`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Fine-grained permissions, e.g. `payment.write`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Free-form attributes for ABAC rules (department, clearance, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// The tenant the principal acts in, for multi-tenant deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl Principal {
    /// The id used when a call carries no principal at all.
    pub const ANONYMOUS: &'static str = "anonymous";

    /// A principal with this id and nothing else.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// The principal of calls made without any identity.
    pub fn anonymous() -> Self {
        Self::new(Self::ANONYMOUS)
    }

    /// Adds roles.
    #[must_use]
    pub fn with_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds permissions.
    #[must_use]
    pub fn with_permissions<I, S>(mut self, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions
            .extend(permissions.into_iter().map(Into::into));
        self
    }

    /// Sets one attribute.
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the principal holds `permission`.
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// Whether this is the anonymous principal.
    pub fn is_anonymous(&self) -> bool {
        self.id == Self::ANONYMOUS
    }

    /// Runs `fut` with this principal as the caller of every governed call
    /// made inside it (unless a call names its own principal).
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(Arc::new(self), fut)
    }

    /// The principal of the enclosing [`Principal::scope`], if any.
    pub fn current() -> Option<Arc<Principal>> {
        CURRENT.try_with(Arc::clone).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scope_sets_current_principal() {
        assert!(Principal::current().is_none());
        let seen = Principal::new("alice")
            .with_roles(["admin"])
            .scope(async { Principal::current() })
            .await;
        let seen = seen.unwrap();
        assert_eq!(seen.id, "alice");
        assert!(seen.has_role("admin"));
        assert!(Principal::current().is_none());
    }
}
