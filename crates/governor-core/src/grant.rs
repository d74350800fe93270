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
    /// Whether it covers a call of `policy` with `input` at `now` (action
    /// and principal are matched by the store's lookup).
    pub fn covers(&self, policy: &str, input: &Value, now: DateTime<Utc>) -> bool {
        self.policy == policy
            && self.until > now
            && self.arguments.as_ref().is_none_or(|a| a.value() == *input)
    }
}
