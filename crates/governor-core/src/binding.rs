//! What an approval is bound to: the action, the arguments that will run,
//! the requester and the action's policy version. What was approved is
//! what runs; a call approved under other policies is evaluated again.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::approval::{ApprovalRequest, ApprovalSpec};
use crate::audit::hex;
use crate::execution::Execution;
use crate::json::Json;
use crate::policy::Policy;
use crate::principal::Principal;

/// The version of an action's policies: a digest of each policy's name,
/// kind, phase, shadow mode and [`fingerprint`](Policy::fingerprint), and
/// of the label given with `ActionBuilder::policy_version`.
pub(crate) fn policy_version(policies: &[Arc<dyn Policy>], label: Option<&str>) -> Arc<str> {
    let mut h = Sha256::new();
    text(&mut h, label.unwrap_or(""));
    for p in policies {
        text(&mut h, p.name());
        text(
            &mut h,
            &format!("{:?} {:?} {}", p.kind(), p.phase(), p.is_shadow()),
        );
        text(&mut h, &p.fingerprint());
    }
    Arc::from(hex(&h.finalize()[..16]))
}

/// The digest an approval binds: `sha256` over the action, the requester
/// (id and tenant), the arguments' stored JSON and the policy version.
pub(crate) fn approval_digest(
    action: &str,
    requester: &Principal,
    inputs: &Json,
    policy_version: &str,
) -> String {
    let mut h = Sha256::new();
    text(&mut h, "governor approval v1");
    text(&mut h, action);
    text(&mut h, &requester.id);
    text(&mut h, requester.tenant.as_deref().unwrap_or(""));
    text(&mut h, inputs.as_str());
    text(&mut h, policy_version);
    hex(&h.finalize())
}

fn text(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

impl ApprovalRequest {
    /// Binds the request to what `e` would run with `inputs` under
    /// `policy_version`.
    pub(crate) fn bind(&mut self, e: &Execution, inputs: &Json, policy_version: &str) {
        self.digest = Some(approval_digest(
            &e.action,
            &e.principal,
            inputs,
            policy_version,
        ));
        self.policy_version = Some(policy_version.to_owned());
    }

    /// Whether an approved stage of this request asked for what `spec`
    /// asks (same policy, approvers and at least its quorum), so that
    /// `spec` needs no new decision.
    pub(crate) fn covers(&self, spec: &ApprovalSpec) -> bool {
        self.stages.iter().any(|s| {
            s.is_approved()
                && s.spec.policy == spec.policy
                && s.spec.approvers == spec.approvers
                && s.spec.quorum >= spec.quorum
        })
    }
}

/// How an approved execution stands against what was approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// What runs is what was approved, under the same policies (or the
    /// request predates binding).
    Intact,
    /// The same call, but the action's policies changed since.
    PoliciesChanged,
    /// The action, requester or arguments are not what was approved.
    Mismatch,
}

/// Checks `e`, about to run with `inputs`, against its approval.
pub(crate) fn check(e: &Execution, inputs: &Json, current_version: &str) -> Check {
    let Some(request) = &e.approval else {
        return Check::Intact;
    };
    let (Some(digest), Some(version)) = (&request.digest, &request.policy_version) else {
        return Check::Intact;
    };
    if approval_digest(&e.action, &e.principal, inputs, version) != *digest {
        Check::Mismatch
    } else if version != current_version {
        Check::PoliciesChanged
    } else {
        Check::Intact
    }
}
