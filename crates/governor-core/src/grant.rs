//! Standing grants: an approver lets one principal's repeated calls of one
//! action pass one approval policy for a while, optionally only with the
//! same arguments.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::json::Json;

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
