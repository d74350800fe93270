//! Standing grants: an approver lets one principal's repeated calls of one
//! action pass one approval policy for a while, optionally only with the
//! same arguments.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::action::Args;
use crate::error::{GovernError, StoreError};
use crate::event::{Event, EventKind};
use crate::governor::Governor;
use crate::json::Json;
use crate::policy::AuditPolicy;
use crate::principal::Principal;

/// The governed action behind revoking a grant (audited with its inputs).
pub const REVOKE_GRANT_ACTION: &str = "governor.revoke_grant";

/// Permission to list and revoke every standing grant. Without it one
/// revokes the grants one gave or that cover one's own calls.
pub const GRANTS_PERMISSION: &str = "governor:grants";

/// The most grants one listing returns.
pub const MAX_GRANTS_LISTED: usize = 10_000;

/// A standing approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// Unique, time-ordered id.
    pub id: Uuid,
    /// The action it covers.
    pub action: String,
    /// The approval policy it answers for.
    pub policy: String,
    /// The principal whose calls it covers.
    pub principal: String,
    /// The principal's tenant: a principal of the same id in another
    /// tenant is someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The action's policy version when it was granted: a grant answers
    /// for the policy as it was, and a changed policy voids it.
    #[serde(default)]
    pub policy_version: String,
    /// The execution whose decision gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<crate::ExecutionId>,
    /// If set, only calls with exactly these arguments are covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Json>,
    /// When it stops applying.
    pub until: DateTime<Utc>,
    /// The approver who granted it.
    pub granted_by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was granted.
    pub created_at: DateTime<Utc>,
}

impl Grant {
    /// Whether it covers a call of `policy` (under the action's
    /// `policy_version`) by a principal of `tenant`, with `input`, at
    /// `now` (action and principal id are matched by the store's lookup).
    pub fn covers(
        &self,
        policy: &str,
        policy_version: &str,
        tenant: Option<&str>,
        input: &Value,
        now: DateTime<Utc>,
    ) -> bool {
        self.policy == policy
            && self.policy_version == policy_version
            && self.tenant.as_deref() == tenant
            && self.until > now
            && self.arguments.as_ref().is_none_or(|a| a.value() == *input)
    }
}

impl Grant {
    /// Whether `who` may revoke it: who gave it, whom it covers (in its
    /// tenant), or a holder of [`GRANTS_PERMISSION`].
    pub fn revocable_by(&self, who: &Principal) -> bool {
        who.has_permission(GRANTS_PERMISSION)
            || (who.tenant == self.tenant
                && (who.id == self.granted_by || who.id == self.principal))
    }
}

impl Governor {
    /// The standing grants still valid, oldest first (at most `limit`, and
    /// never more than [`MAX_GRANTS_LISTED`]).
    pub async fn grants(&self, limit: usize) -> Result<Vec<Grant>, StoreError> {
        self.store()
            .valid_grants(Utc::now(), limit.min(MAX_GRANTS_LISTED))
            .await
    }

    /// Revokes the grant `id` as `operator` (see [`Grant::revocable_by`];
    /// anyone else is denied, on the record): from now on the calls it
    /// covered ask again. Recorded as a governed call of
    /// [`REVOKE_GRANT_ACTION`] (in the audit log with who and why) and
    /// announced as `grant.revoked` (on the execution whose decision gave
    /// it). `Ok(None)` if no valid grant has that id.
    pub async fn revoke_grant(
        &self,
        id: uuid::Uuid,
        operator: &Principal,
        reason: &str,
    ) -> Result<Option<Grant>, GovernError> {
        let now = Utc::now();
        let grants = self.store().valid_grants(now, MAX_GRANTS_LISTED).await?;
        let Some(grant) = grants.into_iter().find(|g| g.id == id) else {
            return Ok(None);
        };
        let args = Args::new()
            .arg("grant", &id.to_string())
            .arg("action", &grant.action)
            .arg("principal", &grant.principal)
            .arg("reason", &reason);
        let store = std::sync::Arc::clone(self.store());
        let revocable = grant.clone();
        let removed = self
            .action(REVOKE_GRANT_ACTION)
            .policy(crate::policy_fn("GrantRevoker", move |ctx| {
                if revocable.revocable_by(ctx.principal) {
                    crate::Decision::Allow
                } else {
                    crate::Decision::deny(format!(
                        "`{}` did not give this grant, is not covered by it, and lacks `{GRANTS_PERMISSION}`",
                        ctx.principal.id
                    ))
                }
            }))
            .policy(
                AuditPolicy::new()
                    .log_inputs(true)
                    .compliance_tags(["SOC2"]),
            )
            .build()?
            .run_as(operator.clone(), args, || async move {
                store.remove_grant(id).await.map_err(GovernError::Store)
            })
            .await?;
        if let Some(grant) = &removed {
            let data = serde_json::json!({
                "grant": grant.id, "action": grant.action, "principal": grant.principal,
                "by": operator.id, "reason": reason,
            });
            self.events().emit(Event::at(
                now,
                EventKind::GrantRevoked,
                grant
                    .execution_id
                    .unwrap_or_else(|| crate::ExecutionId::from_uuid(grant.id)),
                std::sync::Arc::from(grant.action.as_str()),
                Json::from(&data),
            ));
        }
        Ok(removed)
    }
}
