//! Approval policies and the approval requests they park executions with.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::json::Json;
use crate::policy::{Decision, Policy, PolicyContext, PolicyKind, PolicyPhase};
use crate::principal::Principal;

/// What happens when nobody decides before an approval request expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OnExpiry {
    /// The execution is rejected (the default).
    Reject,
    /// The execution is approved by the system.
    Approve,
    /// The request goes to other approvers with a new expiry.
    Escalate {
        /// Who decides after escalation.
        approvers: Vec<String>,
        /// How long the escalated request stays open (`None`: never expires).
        #[serde(default, with = "opt_secs")]
        expires_in: Option<Duration>,
    },
}

/// What an approval policy asks for when a call needs a human decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalSpec {
    /// The policy asking.
    pub policy: String,
    /// Who may decide: principal ids, emails, or `role:<name>`.
    pub approvers: Vec<String>,
    /// Why approval is needed.
    pub reason: String,
    /// How long the caller stays connected waiting (sync pattern).
    #[serde(with = "secs")]
    pub wait: Duration,
    /// How long the request stays open (`None`: never expires).
    #[serde(default, with = "opt_secs")]
    pub expires_in: Option<Duration>,
    /// What happens at expiry.
    pub on_expiry: OnExpiry,
    /// Whether a decision must carry a reason.
    pub require_reason: bool,
    /// Whether the requester may approve their own request.
    pub allow_self_approval: bool,
    /// How many distinct approvers must approve (default 1).
    #[serde(default = "one")]
    pub quorum: u32,
    /// Whether one rejection rejects the request (default) or is only
    /// recorded while others may still reach the quorum.
    #[serde(default = "yes")]
    pub veto: bool,
    /// Which standing grants an approver may give with a decision.
    #[serde(default)]
    pub grants: GrantRules,
    /// Whether someone who decided another stage of the same request may
    /// decide this one too (default no: each stage is a separate pair of
    /// eyes, even when one person is listed in several, directly or
    /// through a role).
    #[serde(default)]
    pub allow_same_approver_across_stages: bool,
    /// The condition that made this call ask, when a condition did (a
    /// policy's `when:`, or an `auto_approve_when` that did not hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Whom the request is sent to and how its links work (boxed: most
    /// requests keep the default, and every policy decision carries a
    /// spec).
    #[serde(default, skip_serializing_if = "NotifySpec::is_default")]
    pub notify: Box<NotifySpec>,
}

/// Where an approval policy's requests are sent, and what their links
/// allow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// The delivery targets told about the request, by name (`email`,
    /// `slack`, a webhook's name); empty: every configured target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// What the links in messages do.
    #[serde(default, skip_serializing_if = "LinkMode::is_default")]
    pub links: LinkMode,
    /// People told about the request who do not decide it (addresses, or
    /// names a target maps to addresses): they get the request without
    /// decision links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// Reminders to the approvers who have not decided, this many seconds
    /// before the stage expires (`[3600, 300]`: an hour before, and five
    /// minutes before). Needs an expiry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remind_before_seconds: Vec<u64>,
}

impl NotifySpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the target named `target` is told about the request: every
    /// target when no channels are listed, else those listed by their
    /// whole name (`webhook:ops`) or the part after the kind (`ops`).
    pub fn reaches(&self, target: &str) -> bool {
        let short = target.split_once(':').map_or(target, |(_, n)| n);
        self.channels.is_empty() || self.channels.iter().any(|c| c == target || c == short)
    }
}

/// What the links in an approval message do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// Personal one-time links decide (after a confirmation page): the
    /// address the policy lists is the approver's identity.
    #[default]
    OneTime,
    /// Links open the console, where the approver signs in to decide.
    SignIn,
}

impl LinkMode {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The condition that made a call need approval: shown to approvers with
/// the values it read, so they see why this call asks them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// The condition as written (CEL).
    pub condition: String,
    /// `true` when the call asks because the condition did *not* hold (an
    /// `auto_approve_when`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unless: bool,
    /// The arguments the condition reads (`amount` for `input.amount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Trigger {
    /// The trigger of a call that asks because `condition` holds (`unless`
    /// false) or does not.
    pub fn of(condition: &crate::condition::Condition, unless: bool) -> Self {
        let mut fields: Vec<String> = condition
            .input_fields()
            .map(|(f, _)| f.to_owned())
            .collect();
        fields.dedup();
        Self {
            condition: condition.source().to_owned(),
            unless,
            fields,
        }
    }
}

/// Which standing grants ([`Governor::approve_and_grant`]) a decision on a
/// stage may give.
///
/// The defaults are the cautious ones: a grant covers only calls with the
/// same arguments and lasts at most [`GrantRules::DEFAULT_MAX_WINDOW`]
/// (24 hours); a policy widens them explicitly. Grants are given only by
/// the decision that completes a stage of quorum 1.
///
/// [`Governor::approve_and_grant`]: crate::Governor::approve_and_grant
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRules {
    /// Whether grants may be given at all (default yes).
    #[serde(default = "yes")]
    pub allowed: bool,
    /// The longest window a grant may cover (`None`: any).
    #[serde(default = "default_max_window", with = "opt_secs")]
    pub max_window: Option<Duration>,
    /// Whether a grant must be limited to the same arguments (default
    /// yes).
    #[serde(default = "yes")]
    pub same_arguments_only: bool,
}

impl Default for GrantRules {
    fn default() -> Self {
        Self {
            allowed: true,
            max_window: default_max_window(),
            same_arguments_only: true,
        }
    }
}

fn default_max_window() -> Option<Duration> {
    Some(GrantRules::DEFAULT_MAX_WINDOW)
}

impl GrantRules {
    /// The longest a grant lasts unless the policy says otherwise.
    pub const DEFAULT_MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

    /// No grants: every call asks.
    pub fn none() -> Self {
        Self {
            allowed: false,
            ..Self::default()
        }
    }

    /// Why a grant of `window` (for the same arguments only, or not) is not
    /// allowed, if it is not.
    pub fn refusal(&self, window: Duration, same_arguments: bool) -> Option<String> {
        if !self.allowed {
            return Some("this approval allows no standing grants".into());
        }
        if let Some(max) = self.max_window.filter(|m| window > *m) {
            return Some(format!(
                "a grant may cover at most {}s, not {}s",
                max.as_secs_f64(),
                window.as_secs_f64()
            ));
        }
        if self.same_arguments_only && !same_arguments {
            return Some("grants of this approval must be limited to the same arguments".into());
        }
        None
    }
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl ApprovalSpec {
    /// A spec with the default settings: no wait, one hour to decide,
    /// reject at expiry.
    pub fn new(policy: impl Into<String>, approvers: Vec<String>) -> Self {
        Self {
            policy: policy.into(),
            approvers,
            reason: "approval required".into(),
            wait: Duration::ZERO,
            expires_in: Some(Duration::from_secs(3600)),
            on_expiry: OnExpiry::Reject,
            require_reason: false,
            allow_self_approval: false,
            quorum: 1,
            veto: true,
            grants: GrantRules::default(),
            allow_same_approver_across_stages: false,
            trigger: None,
            notify: Box::default(),
        }
    }

    /// Sets the reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
}

/// One human decision on a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageDecision {
    /// The authenticated approver's id.
    pub approver: String,
    /// Approved (`true`) or rejected.
    pub approved: bool,
    /// The reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// An approval given for arguments that an approver later edited: it
    /// is kept for the record but no longer counts, and its approver may
    /// decide again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
    /// How the decision came, when not through a signed-in session
    /// (`link`: a one-time emailed link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// One stage of a parked execution's approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalStage {
    /// What was asked.
    pub spec: ApprovalSpec,
    /// When the stage stops accepting decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The decisions made on this stage, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<StageDecision>,
    /// The reminders sent (their `remind_before_seconds`), so that each
    /// goes out once whichever instance sweeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reminded: Vec<u64>,
}

impl ApprovalStage {
    /// A stage asking `spec` from `now`: expiring after its `expires_in`,
    /// nothing decided yet.
    pub fn open(spec: ApprovalSpec, now: DateTime<Utc>) -> Self {
        Self {
            expires_at: spec
                .expires_in
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .and_then(|d| now.checked_add_signed(d)),
            decisions: Vec::new(),
            reminded: Vec::new(),
            spec,
        }
    }

    /// Whether an approval decided this stage.
    pub fn is_approved(&self) -> bool {
        self.approvals() >= self.spec.quorum.max(1) as usize
    }

    /// Distinct approvers who approved what will run (decisions are one
    /// per approver; superseded ones do not count).
    pub fn approvals(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.approved && !d.superseded)
            .count()
    }

    /// Whether `approver` already decided this stage (for what will run).
    pub fn has_decided(&self, approver: &str) -> bool {
        self.decisions
            .iter()
            .any(|d| d.approver == approver && !d.superseded)
    }

    /// Whether `who` is one of this stage's approvers: by id, by the
    /// `email` attribute (case-insensitive, only against entries holding
    /// an `@`), or by `role:<name>`.
    pub fn is_approver(&self, who: &Principal) -> bool {
        let email = who.attributes.get("email").and_then(|v| v.as_str());
        self.spec
            .approvers
            .iter()
            .any(|a| match a.strip_prefix("role:") {
                Some(role) => who.has_role(role),
                // Only an entry that is an email matches by email: an id
                // such as `cfo` must not be claimable by an email `cfo`.
                None => {
                    *a == who.id
                        || (a.contains('@') && email.is_some_and(|e| e.eq_ignore_ascii_case(a)))
                }
            })
    }
}

/// The approval request an execution is parked with. Several approval
/// policies on one call become sequential stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// When the request was made.
    pub requested_at: DateTime<Utc>,
    /// The stages, decided in order.
    pub stages: Vec<ApprovalStage>,
    /// Arguments an approver changed; the action runs with these. The
    /// execution's `inputs` keep what was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_inputs: Option<Json>,
    /// The digest of what is approved: action, requester, the arguments
    /// that will run (the edits, once an approver made some) and the
    /// policy version. A run whose digest differs is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The action's policy version when the request was made; if the
    /// policies change before the call runs, they are evaluated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The arguments as given, encrypted with the governor's
    /// [`SealKey`](crate::SealKey), when sensitive fields were redacted
    /// from the stored ones (so that the approved call can still run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_inputs: Option<String>,
}

impl ApprovalRequest {
    /// A request made now for these specs.
    pub fn new(specs: Vec<ApprovalSpec>) -> Self {
        let now = Utc::now();
        let stages = specs
            .into_iter()
            .map(|spec| ApprovalStage::open(spec, now))
            .collect();
        Self {
            requested_at: now,
            stages,
            edited_inputs: None,
            digest: None,
            policy_version: None,
            sealed_inputs: None,
        }
    }

    /// The stage waiting for a decision (the first not yet approved).
    pub fn current_stage(&self) -> Option<(usize, &ApprovalStage)> {
        self.stages
            .iter()
            .enumerate()
            .find(|(_, s)| !s.is_approved())
    }

    /// Whether `approver` decided a stage of this request other than
    /// `stage` (superseded decisions included: they were still a look).
    pub fn decided_other_stage(&self, stage: usize, approver: &str) -> bool {
        self.stages
            .iter()
            .enumerate()
            .any(|(j, s)| j != stage && s.decisions.iter().any(|d| d.approver == approver))
    }

    /// The arguments the action will run with: the edits, once an approver
    /// made some, else `asked` (the execution's inputs).
    pub fn will_run<'a>(&'a self, asked: &'a Json) -> &'a Json {
        self.edited_inputs.as_ref().unwrap_or(asked)
    }

    /// Every approver named by any stage.
    pub fn approvers(&self) -> impl Iterator<Item = &str> {
        self.stages
            .iter()
            .flat_map(|s| s.spec.approvers.iter().map(String::as_str))
    }
}

type Condition = Arc<dyn Fn(&serde_json::Value, &Principal) -> bool + Send + Sync>;

/// Requires a human decision before the action runs.
///
/// `wait` is how long the caller stays connected (the sync pattern);
/// `expires_in` is how long the request stays open for a decision. They
/// are separate on purpose: a caller may leave after seconds while the
/// request stays open for hours. When the call cannot wait, it returns
/// [`GovernError::Pending`](crate::GovernError::Pending) with the ticket id.
#[derive(Clone)]
pub struct ApprovalPolicy {
    name: String,
    spec: ApprovalSpec,
    auto_approve: Option<Condition>,
    auto_approve_cel: Option<crate::condition::Condition>,
    auto_approve_source: Option<String>,
}

impl ApprovalPolicy {
    /// Approval by any of `approvers` (principal ids, emails, or
    /// `role:<name>`).
    pub fn new<I, S>(approvers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let approvers: Vec<String> = approvers.into_iter().map(Into::into).collect();
        let name = "ApprovalPolicy".to_owned();
        let reason = format!("approval required from: {}", approvers.join(", "));
        Self {
            spec: ApprovalSpec::new(name.clone(), approvers).with_reason(reason),
            name,
            auto_approve: None,
            auto_approve_cel: None,
            auto_approve_source: None,
        }
    }

    /// Sets the policy's name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.spec.policy = self.name.clone();
        self
    }

    /// How long the caller waits for a decision before getting
    /// `Pending` (default: zero, return at once).
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.spec.wait = wait;
        self
    }

    /// How long the request stays open; `None` means it never expires.
    #[must_use]
    pub fn expires_in(mut self, expires_in: Option<Duration>) -> Self {
        self.spec.expires_in = expires_in;
        self
    }

    /// The seed's `timeout_seconds`: the request's expiry.
    #[must_use]
    pub fn timeout_seconds(self, seconds: u64) -> Self {
        self.expires_in(Some(Duration::from_secs(seconds)))
    }

    /// What happens at expiry.
    #[must_use]
    pub fn on_expiry(mut self, on_expiry: OnExpiry) -> Self {
        self.spec.on_expiry = on_expiry;
        self
    }

    /// Require a reason with every decision.
    #[must_use]
    pub fn require_reason(mut self, require: bool) -> Self {
        self.spec.require_reason = require;
        self
    }

    /// Requires `quorum` distinct approvers (M of N). With `veto` (the
    /// default) one rejection rejects; without it a rejection is recorded
    /// and the others may still reach the quorum.
    #[must_use]
    pub fn quorum(mut self, quorum: u32, veto: bool) -> Self {
        self.spec.quorum = quorum.max(1);
        self.spec.veto = veto;
        self
    }

    /// Let the requester approve their own request.
    #[must_use]
    pub fn allow_self_approval(mut self, allow: bool) -> Self {
        self.spec.allow_self_approval = allow;
        self
    }

    /// Where requests are sent and what their links allow (default: every
    /// target, one-time links).
    #[must_use]
    pub fn notify(mut self, notify: NotifySpec) -> Self {
        self.spec.notify = Box::new(notify);
        self
    }

    /// Let one person decide several stages of the same request (default
    /// no).
    #[must_use]
    pub fn allow_same_approver_across_stages(mut self, allow: bool) -> Self {
        self.spec.allow_same_approver_across_stages = allow;
        self
    }

    /// Skip the human when `condition(inputs, principal)` holds.
    #[must_use]
    pub fn auto_approve_when<F>(mut self, condition: F) -> Self
    where
        F: Fn(&serde_json::Value, &Principal) -> bool + Send + Sync + 'static,
    {
        self.auto_approve = Some(Arc::new(condition));
        self
    }

    /// Sets which standing grants approvers may give.
    #[must_use]
    pub fn grants(mut self, rules: GrantRules) -> Self {
        self.spec.grants = rules;
        self
    }

    /// Skip the human when the CEL `condition` holds for the call (the
    /// policy files' `auto_approve_when`). A condition that cannot be
    /// evaluated asks the human.
    #[must_use]
    pub fn auto_approve_if(mut self, condition: crate::condition::Condition) -> Self {
        self.auto_approve_source = Some(condition.source().to_owned());
        self.auto_approve_cel = Some(condition);
        self
    }

    /// The spec requests are made with.
    pub fn spec(&self) -> &ApprovalSpec {
        &self.spec
    }
}

#[async_trait]
impl Policy for ApprovalPolicy {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> PolicyKind {
        PolicyKind::Approval
    }
    fn phase(&self) -> PolicyPhase {
        PolicyPhase::PreExecution
    }
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        self.decide(ctx)
    }
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        Some(self.decide(ctx))
    }
    fn approval_spec(&self) -> Option<&ApprovalSpec> {
        Some(&self.spec)
    }
    fn fingerprint(&self) -> String {
        let spec = serde_json::to_string(&self.spec).unwrap_or_default();
        format!(
            "{spec} auto:{} {:?}",
            self.auto_approve.is_some(),
            self.auto_approve_source
        )
    }
}

impl ApprovalPolicy {
    /// Allows when an auto-approve condition holds; otherwise asks.
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        if let Some(cond) = &self.auto_approve
            && cond(ctx.input, ctx.principal)
        {
            return Decision::Allow;
        }
        let mut spec = self.spec.clone();
        if let Some(cond) = &self.auto_approve_cel {
            match cond.evaluate(ctx) {
                Ok(true) => return Decision::Allow,
                Ok(false) => spec.trigger = Some(Trigger::of(cond, true)),
                Err(e) => tracing::warn!(action = ctx.action, "{e}; asking for approval"),
            }
        }
        Decision::RequireApproval(spec)
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::ctx;
    use serde_json::json;

    #[tokio::test]
    async fn requires_approval_with_its_own_settings() {
        let p = ApprovalPolicy::new(["cfo@company.com"])
            .timeout_seconds(10)
            .require_reason(true)
            .auto_approve_when(|i, _| i["amount"].as_f64().is_some_and(|a| a < 1000.0));
        let who = Principal::new("agent");
        let small = json!({"amount": 500});
        assert_eq!(p.evaluate(&ctx(&small, &who)).await, Decision::Allow);
        let big = json!({"amount": 5000});
        let Decision::RequireApproval(spec) = p.evaluate(&ctx(&big, &who)).await else {
            panic!("approval expected")
        };
        assert_eq!(spec.approvers, vec!["cfo@company.com"]);
        assert_eq!(spec.expires_in, Some(Duration::from_secs(10)));
        assert!(spec.require_reason);
    }

    #[test]
    fn an_email_matches_only_approver_entries_that_are_emails() {
        let stage = |approvers: &[&str]| ApprovalStage {
            spec: ApprovalSpec::new("p", approvers.iter().map(|a| (*a).to_owned()).collect()),
            expires_at: None,
            decisions: Vec::new(),
            reminded: Vec::new(),
        };
        // Someone whose (claimed) email is `cfo` is not the principal `cfo`.
        let mallory = Principal::new("mallory").with_attribute("email", "cfo");
        assert!(!stage(&["cfo"]).is_approver(&mallory));
        let carol = Principal::new("carol").with_attribute("email", "CFO@company.com");
        assert!(stage(&["cfo@company.com"]).is_approver(&carol));
        assert!(stage(&["carol"]).is_approver(&carol));
    }

    #[test]
    fn request_stages_get_expiry_and_serialize() {
        let spec = ApprovalSpec::new("p", vec!["a".into()]);
        let req = ApprovalRequest::new(vec![
            spec.clone(),
            ApprovalSpec {
                expires_in: None,
                ..spec
            },
        ]);
        assert!(req.stages[0].expires_at.is_some());
        assert!(req.stages[1].expires_at.is_none());
        let text = serde_json::to_string(&req).unwrap();
        let back: ApprovalRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back.stages.len(), 2);
        assert_eq!(back.stages[0].spec.on_expiry, OnExpiry::Reject);
    }
}
