//! The documents as parsed, before their meaning is checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

/// A whole file: the seed's top-level keys plus `include` and `actions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) policies: Vec<RawPolicy>,
    /// Files whose policies come first (relative to this file).
    #[serde(default)]
    pub(super) include: Vec<PathBuf>,
    /// Default selectors for entries without their own `actions`.
    #[serde(default)]
    pub(super) actions: Option<Vec<String>>,
    #[serde(default)]
    pub(super) version: Option<Value>,
    #[serde(default)]
    pub(super) environment: Option<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) last_updated: Option<Value>,
    #[serde(default)]
    pub(super) owner: Option<String>,
    #[serde(default)]
    pub(super) industry: Option<String>,
    #[serde(default)]
    pub(super) compliance_frameworks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) metadata: Option<Map<String, Value>>,
    /// How actions' requests read to approvers.
    #[serde(default)]
    pub(super) displays: Vec<RawDisplay>,
}

/// One `displays:` entry: a [`crate::Display`] for the actions selected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisplay {
    pub(super) actions: Vec<String>,
    pub(super) title: Option<String>,
    /// Names, or `{name, label, currency, unit}` maps; checked after
    /// parsing so that a mistake names its place.
    #[serde(default)]
    pub(super) fields: Vec<Value>,
    pub(super) on_approve: Option<String>,
}

/// One entry: the union of every policy type's keys; which keys a type
/// accepts is checked after parsing. Approval stages are entries too
/// (without `type`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) name: Option<String>,
    pub(super) enabled: Option<bool>,
    pub(super) phase: Option<String>,
    pub(super) description: Option<String>,
    pub(super) shadow: Option<bool>,
    /// Action-name patterns this entry governs (`payments.*`).
    pub(super) actions: Option<Vec<String>>,
    /// A CEL condition: the policy applies only when it holds.
    pub(super) when: Option<String>,
    // validation
    pub(super) strict: Option<bool>,
    pub(super) input_schema: Option<Value>,
    pub(super) output_schema: Option<Value>,
    // authorization
    pub(super) required_roles: Option<Vec<String>>,
    pub(super) required_permissions: Option<Vec<String>>,
    pub(super) context_key: Option<String>,
    pub(super) require_approval_on_failure: Option<bool>,
    pub(super) conditions: Option<BTreeMap<String, String>>,
    pub(super) cedar: Option<String>,
    pub(super) cedar_file: Option<PathBuf>,
    // rate limit
    pub(super) max_calls: Option<u32>,
    pub(super) window_seconds: Option<f64>,
    pub(super) per_user: Option<bool>,
    pub(super) user_key: Option<String>,
    pub(super) burst_size: Option<u32>,
    pub(super) shared: Option<bool>,
    pub(super) on_backend_error: Option<String>,
    // audit
    pub(super) log_inputs: Option<bool>,
    pub(super) log_outputs: Option<bool>,
    /// Names, or `{field, mask}` maps; checked after parsing.
    pub(super) sensitive_fields: Option<Vec<Value>>,
    pub(super) compliance_tags: Option<Vec<String>>,
    // approval (and authorization's approval on failure)
    pub(super) approvers: Option<Vec<String>>,
    pub(super) timeout_seconds: Option<f64>,
    pub(super) on_timeout: Option<String>,
    pub(super) require_reason: Option<bool>,
    // approval additions (the approvals issue)
    pub(super) wait_seconds: Option<f64>,
    pub(super) expires_in_seconds: Option<ExpiresIn>,
    pub(super) escalate_to: Option<Vec<String>>,
    pub(super) escalate_expires_in_seconds: Option<ExpiresIn>,
    pub(super) quorum: Option<u32>,
    pub(super) veto: Option<bool>,
    pub(super) allow_self_approval: Option<bool>,
    pub(super) allow_same_approver_across_stages: Option<bool>,
    pub(super) auto_approve_when: Option<String>,
    pub(super) stages: Option<Vec<RawPolicy>>,
    /// `false`, or `{max_window_seconds, same_arguments_only}`; checked
    /// after parsing, so a mistake names its key.
    pub(super) grants: Option<Value>,
    /// `{channels, links}`; checked after parsing, as `grants` is.
    pub(super) notify: Option<Value>,
}

impl RawPolicy {
    /// The policy-specific keys the entry sets (the common ones, such as
    /// `name`, `actions` and `when`, are not listed), in a fixed order.
    pub(super) fn keys_set(&self) -> Vec<&'static str> {
        let p = self;
        let present: [(&'static str, bool); 38] = [
            ("grants", p.grants.is_some()),
            ("notify", p.notify.is_some()),
            ("conditions", p.conditions.is_some()),
            ("cedar", p.cedar.is_some()),
            ("cedar_file", p.cedar_file.is_some()),
            ("auto_approve_when", p.auto_approve_when.is_some()),
            ("stages", p.stages.is_some()),
            ("wait_seconds", p.wait_seconds.is_some()),
            ("expires_in_seconds", p.expires_in_seconds.is_some()),
            ("escalate_to", p.escalate_to.is_some()),
            (
                "escalate_expires_in_seconds",
                p.escalate_expires_in_seconds.is_some(),
            ),
            ("quorum", p.quorum.is_some()),
            ("veto", p.veto.is_some()),
            ("allow_self_approval", p.allow_self_approval.is_some()),
            (
                "allow_same_approver_across_stages",
                p.allow_same_approver_across_stages.is_some(),
            ),
            ("strict", p.strict.is_some()),
            ("input_schema", p.input_schema.is_some()),
            ("output_schema", p.output_schema.is_some()),
            ("required_roles", p.required_roles.is_some()),
            ("required_permissions", p.required_permissions.is_some()),
            ("context_key", p.context_key.is_some()),
            (
                "require_approval_on_failure",
                p.require_approval_on_failure.is_some(),
            ),
            ("max_calls", p.max_calls.is_some()),
            ("window_seconds", p.window_seconds.is_some()),
            ("per_user", p.per_user.is_some()),
            ("user_key", p.user_key.is_some()),
            ("burst_size", p.burst_size.is_some()),
            ("shared", p.shared.is_some()),
            ("on_backend_error", p.on_backend_error.is_some()),
            ("log_inputs", p.log_inputs.is_some()),
            ("log_outputs", p.log_outputs.is_some()),
            ("sensitive_fields", p.sensitive_fields.is_some()),
            ("compliance_tags", p.compliance_tags.is_some()),
            ("approvers", p.approvers.is_some()),
            ("timeout_seconds", p.timeout_seconds.is_some()),
            ("on_timeout", p.on_timeout.is_some()),
            ("require_reason", p.require_reason.is_some()),
            ("phase", p.phase.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect()
    }
}

/// Seconds, or `never`.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(super) enum ExpiresIn {
    Seconds(f64),
    Never(Never),
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum Never {
    Never,
}

impl ExpiresIn {
    pub(super) fn duration(self) -> Option<Result<Duration, ()>> {
        match self {
            Self::Seconds(s) => Some(Duration::try_from_secs_f64(s).map_err(|_| ())),
            Self::Never(Never::Never) => None,
        }
    }
}
