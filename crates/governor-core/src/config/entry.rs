//! One policy entry: its keys checked and turned into a policy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::locate::Locator;
use super::raw::RawPolicy;
use super::{ConfigError, LoadedPolicy};
use crate::approval::{ApprovalPolicy, GrantRules, OnExpiry};
use crate::condition::Condition;
use crate::policy::{
    AuditPolicy, AuthorizationPolicy, Policy, PolicyExt, PolicyKind, PolicyPhase, RateLimitPolicy,
    ValidationPolicy,
};
use crate::selector::ActionSelector;

/// A built policy with the name it is listed under.
type Named = (String, Arc<dyn Policy>);

/// What every entry of one file shares while it is built.
pub(super) struct Scope<'a> {
    pub(super) at: &'a Locator<'a>,
    /// `env.name` in conditions.
    pub(super) environment: &'a str,
    /// The file's folder, for `cedar_file`.
    pub(super) base: Option<&'a Path>,
    /// The file's top-level `actions`.
    pub(super) actions: Option<&'a ActionSelector>,
    /// Input schemas that close the set of argument names.
    pub(super) schemas: &'a [ClosedSchema],
    /// The backend of `shared: true` rate limits.
    pub(super) shared_rate_limits: Option<&'a Arc<dyn crate::policy::RateLimitBackend>>,
}

/// A validation entry's `input_schema` that lists its `properties` and
/// allows no others: conditions over the same actions may only read
/// those fields.
pub(super) struct ClosedSchema {
    policy: String,
    /// The entry's selectors as written; `None` for every action.
    actions: Option<Vec<String>>,
    fields: Vec<String>,
}

impl ClosedSchema {
    /// The closed input schemas of a file's entries.
    pub(super) fn of(policies: &[RawPolicy], default: Option<&ActionSelector>) -> Vec<Self> {
        policies
            .iter()
            .filter(|p| p.kind.as_deref() == Some("validation") && p.enabled != Some(false))
            .filter_map(|p| {
                let schema = p.input_schema.as_ref()?;
                if schema.get("additionalProperties") != Some(&serde_json::Value::Bool(false)) {
                    return None;
                }
                let fields = schema
                    .get("properties")?
                    .as_object()?
                    .keys()
                    .cloned()
                    .collect();
                Some(Self {
                    policy: p.name.clone().unwrap_or_else(|| "ValidationPolicy".into()),
                    actions: effective_actions(p, default),
                    fields,
                })
            })
            .collect()
    }

    fn covers(&self, actions: Option<&[String]>) -> bool {
        self.actions
            .as_deref()
            .is_none_or(|mine| actions == Some(mine))
    }
}

/// The selectors an entry governs by: its own, or the file's.
fn effective_actions(p: &RawPolicy, default: Option<&ActionSelector>) -> Option<Vec<String>> {
    p.actions
        .clone()
        .or_else(|| default.map(|d| d.patterns().to_vec()))
}

impl Scope<'_> {
    /// Compiles the expression `source` of `key` in entry `i`, which
    /// governs `actions`.
    fn condition(
        &self,
        i: usize,
        key: &str,
        source: &str,
        before_run: bool,
        actions: Option<&[String]>,
    ) -> Result<Condition, ConfigError> {
        let compiled = if before_run {
            Condition::compile_pre(source, self.environment)
        } else {
            Condition::compile(source, self.environment)
        };
        let condition = compiled.map_err(|e| {
            let pos = self.at.expression(i, key, source, e.column());
            ConfigError::new(format!("`{key}`: {e}")).at(pos)
        })?;
        for schema in self.schemas.iter().filter(|s| s.covers(actions)) {
            if let Some((field, column)) = condition
                .input_fields()
                .find(|(f, _)| !schema.fields.iter().any(|k| k == f))
            {
                let pos = self.at.expression(i, key, source, Some(column));
                return Err(ConfigError::new(format!(
                    "`{key}`: expression `{source}` uses unknown input field `input.{field}` at column {column} \
                     (the input_schema of `{}` allows: {})",
                    schema.policy,
                    schema.fields.join(", ")
                ))
                .at(pos));
            }
        }
        Ok(condition)
    }
}

pub(super) fn entry(
    i: usize,
    p: RawPolicy,
    scope: &Scope<'_>,
) -> Result<Vec<LoadedPolicy>, ConfigError> {
    let at = scope.at;
    let kind = kind_of(i, &p, at)?;
    check_keys(i, kind, &p, at)?;
    let phase = p
        .phase
        .as_deref()
        .map(|s| {
            s.parse::<PolicyPhase>()
                .map_err(|e| ConfigError::new(e).at(at.key(i, "phase")))
        })
        .transpose()?;
    let default_name = match kind {
        PolicyKind::Validation => "ValidationPolicy",
        PolicyKind::Authorization => "AuthorizationPolicy",
        PolicyKind::RateLimit => "RateLimitPolicy",
        PolicyKind::Audit => "AuditPolicy",
        _ => "ApprovalPolicy",
    };
    let name = p.name.clone().unwrap_or_else(|| default_name.to_owned());
    let actions = match &p.actions {
        Some(patterns) => Some(
            ActionSelector::new(patterns.iter().cloned())
                .map_err(|e| ConfigError::new(e.to_string()).at(at.key(i, "actions")))?,
        ),
        None => scope.actions.cloned(),
    };
    let before_run = phase != Some(PolicyPhase::PostExecution);
    let governs = effective_actions(&p, scope.actions);
    let when = p
        .when
        .as_deref()
        .map(|w| scope.condition(i, "when", w, before_run, governs.as_deref()))
        .transpose()?;
    let mut warnings = Vec::new();
    let policies: Vec<Named> = match kind {
        PolicyKind::Validation => vec![(
            name.clone(),
            validation(i, &name, &p, phase, at, &mut warnings)?,
        )],
        PolicyKind::Authorization => vec![(
            name.clone(),
            authorization(i, &name, &p, scope, governs.as_deref())?,
        )],
        PolicyKind::RateLimit => vec![(name.clone(), rate_limit(i, &name, &p, scope)?)],
        PolicyKind::Audit => vec![(name.clone(), audit(i, &name, &p, phase, at)?)],
        _ if p.stages.is_some() => stages(i, &name, &p, scope, governs.as_deref())?,
        _ => vec![(
            name.clone(),
            Arc::new(approval(i, &name, &p, scope, governs.as_deref())?) as Arc<dyn Policy>,
        )],
    };
    if kind == PolicyKind::Audit && when.is_some() {
        warnings.push(format!(
            "audit policy `{name}` has `when`: its sensitive_fields are redacted in every call regardless"
        ));
    }
    Ok(policies
        .into_iter()
        .map(|(name, policy)| {
            let policy = match &when {
                Some(c) => Arc::new(policy.when(c.clone())) as Arc<dyn Policy>,
                None => policy,
            };
            LoadedPolicy {
                name,
                kind,
                description: p.description.clone(),
                enabled: p.enabled.unwrap_or(true),
                warnings: warnings.clone(),
                actions: actions.clone(),
                when: when.as_ref().map(|c| c.source().to_owned()),
                policy: if p.shadow == Some(true) {
                    shadowed(policy)
                } else {
                    policy
                },
            }
        })
        .collect())
}

fn kind_of(i: usize, p: &RawPolicy, at: &Locator<'_>) -> Result<PolicyKind, ConfigError> {
    let Some(kind) = p.kind.as_deref() else {
        return Err(ConfigError::new(
            "missing key `type` (expected validation, authorization, rate_limit, audit or approval)",
        )
        .at(at.key(i, "name")));
    };
    Ok(match kind.to_ascii_lowercase().as_str() {
        "validation" => PolicyKind::Validation,
        "authorization" => PolicyKind::Authorization,
        "rate_limit" | "ratelimit" => PolicyKind::RateLimit,
        "audit" => PolicyKind::Audit,
        "approval" => PolicyKind::Approval,
        other => {
            return Err(ConfigError::new(format!(
                "unknown policy type `{other}` (expected validation, authorization, rate_limit, audit or approval)"
            ))
            .at(at.key(i, "type")));
        }
    })
}

/// An approval with `stages`: one approval policy per stage, decided in
/// order, each by its own approvers.
fn stages(
    i: usize,
    name: &str,
    p: &RawPolicy,
    scope: &Scope<'_>,
    governs: Option<&[String]>,
) -> Result<Vec<Named>, ConfigError> {
    let at = scope.at;
    let stages = p.stages.as_deref().unwrap_or_default();
    if stages.is_empty() {
        return Err(
            ConfigError::new("`stages` is empty: give at least one stage").at(at.key(i, "stages")),
        );
    }
    if let Some(key) = p
        .keys_set()
        .into_iter()
        .find(|k| *k != "stages" && APPROVAL_KEYS.contains(k))
    {
        return Err(ConfigError::new(format!(
            "key `{key}` belongs on each stage when `stages` is given"
        ))
        .at(at.key(i, key)));
    }
    let mut out = Vec::with_capacity(stages.len());
    for (j, stage) in stages.iter().enumerate() {
        let misplaced = [
            ("type", stage.kind.is_some()),
            ("stages", stage.stages.is_some()),
            ("actions", stage.actions.is_some()),
            ("when", stage.when.is_some()),
            ("enabled", stage.enabled.is_some()),
            ("phase", stage.phase.is_some()),
            ("shadow", stage.shadow.is_some()),
        ];
        if let Some((key, _)) = misplaced.iter().find(|(_, set)| *set) {
            return Err(ConfigError::new(format!(
                "key `{key}` does not apply to a stage (give it on the approval entry)"
            ))
            .at(at.key(i, "stages")));
        }
        check_keys(i, PolicyKind::Approval, stage, at)?;
        let stage_name = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage{}", j + 1));
        let full = format!("{name}.{stage_name}");
        out.push((
            full.clone(),
            Arc::new(approval(i, &full, stage, scope, governs)?) as Arc<dyn Policy>,
        ));
    }
    Ok(out)
}

/// The keys of an approval entry (or stage).
const APPROVAL_KEYS: [&str; 16] = [
    "notify",
    "approvers",
    "timeout_seconds",
    "on_timeout",
    "require_reason",
    "wait_seconds",
    "expires_in_seconds",
    "escalate_to",
    "escalate_expires_in_seconds",
    "quorum",
    "veto",
    "allow_self_approval",
    "allow_same_approver_across_stages",
    "auto_approve_when",
    "stages",
    "grants",
];

fn check_keys(
    i: usize,
    kind: PolicyKind,
    p: &RawPolicy,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let allowed: &[&str] = match kind {
        PolicyKind::Validation => &["strict", "input_schema", "output_schema", "phase"],
        PolicyKind::Authorization => &[
            "required_roles",
            "required_permissions",
            "context_key",
            "require_approval_on_failure",
            "approvers",
            "conditions",
            "cedar",
            "cedar_file",
        ],
        PolicyKind::RateLimit => &[
            "max_calls",
            "window_seconds",
            "per_user",
            "user_key",
            "burst_size",
            "shared",
            "on_backend_error",
        ],
        PolicyKind::Audit => &[
            "log_inputs",
            "log_outputs",
            "sensitive_fields",
            "compliance_tags",
            "phase",
        ],
        _ => &APPROVAL_KEYS,
    };
    for key in p.keys_set() {
        if !allowed.contains(&key) {
            return Err(ConfigError::new(format!(
                "key `{key}` does not apply to a {} policy (its keys are: {})",
                kind.as_str(),
                allowed.join(", ")
            ))
            .at(at.key(i, key)));
        }
    }
    Ok(())
}

fn validation(
    i: usize,
    name: &str,
    p: &RawPolicy,
    phase: Option<PolicyPhase>,
    at: &Locator<'_>,
    warnings: &mut Vec<String>,
) -> Result<Arc<dyn Policy>, ConfigError> {
    let mut v = ValidationPolicy::new()
        .named(name)
        .strict(p.strict.unwrap_or(true));
    if let Some(s) = &p.input_schema {
        v = v
            .input_schema(s)
            .map_err(|e| ConfigError::new(e.to_string()).at(at.key(i, "input_schema")))?;
    }
    if let Some(s) = &p.output_schema {
        v = v
            .output_schema(s)
            .map_err(|e| ConfigError::new(e.to_string()).at(at.key(i, "output_schema")))?;
    }
    if let Some(phase) = phase {
        v = v.in_phase(phase);
    }
    if !v.has_checks() {
        warnings.push(format!(
            "validation policy `{name}` has no input_schema or output_schema: it checks nothing until the \
             action supplies validators"
        ));
    }
    Ok(Arc::new(v))
}

fn authorization(
    i: usize,
    name: &str,
    p: &RawPolicy,
    scope: &Scope<'_>,
    governs: Option<&[String]>,
) -> Result<Arc<dyn Policy>, ConfigError> {
    let at = scope.at;
    if let Some(key) = p.context_key.as_deref()
        && !matches!(key, "user" | "principal")
    {
        return Err(ConfigError::new(format!(
            "context_key `{key}` is not supported: the caller is always the call's principal (use `user`)"
        ))
        .at(at.key(i, "context_key")));
    }
    let mut a = AuthorizationPolicy::new()
        .named(name)
        .require_roles(p.required_roles.clone().unwrap_or_default())
        .require_permissions(p.required_permissions.clone().unwrap_or_default());
    if p.require_approval_on_failure == Some(true) {
        let approvers = p
            .approvers
            .clone()
            .unwrap_or_else(|| vec!["role:admin".to_owned()]);
        a = a.approval_on_failure(approvers);
    } else if p.approvers.is_some() {
        return Err(
            ConfigError::new("`approvers` needs `require_approval_on_failure: true`")
                .at(at.key(i, "approvers")),
        );
    }
    for (rule, source) in p.conditions.iter().flatten() {
        let condition = scope.condition(i, "conditions", source, true, governs)?;
        a = a.condition_cel(rule.clone(), condition);
    }
    if let Some(text) = cedar_text(i, p, scope)? {
        a = with_cedar(a, &text).map_err(|e| e.at(at.key(i, "cedar")))?;
    }
    Ok(Arc::new(a))
}

/// The Cedar policy text given inline (`cedar`) or by file (`cedar_file`,
/// relative to the policy file).
fn cedar_text(i: usize, p: &RawPolicy, scope: &Scope<'_>) -> Result<Option<String>, ConfigError> {
    match (&p.cedar, &p.cedar_file) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "give either `cedar` or `cedar_file`, not both",
        )
        .at(scope.at.key(i, "cedar_file"))),
        (Some(text), None) => Ok(Some(text.clone())),
        (None, Some(file)) => {
            let path = scope.base.map_or_else(|| file.clone(), |b| b.join(file));
            super::read_text(&path, &format!("cedar_file {}", path.display()))
                .map(Some)
                .map_err(|e| e.at(scope.at.key(i, "cedar_file")))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(feature = "cedar")]
fn with_cedar(a: AuthorizationPolicy, text: &str) -> Result<AuthorizationPolicy, ConfigError> {
    a.cedar(text)
        .map_err(|e| ConfigError::new(format!("Cedar policies: {e}")))
}

#[cfg(not(feature = "cedar"))]
fn with_cedar(_: AuthorizationPolicy, _: &str) -> Result<AuthorizationPolicy, ConfigError> {
    Err(ConfigError::new(
        "Cedar policies need governor built with the `cedar` feature",
    ))
}

fn rate_limit(
    i: usize,
    name: &str,
    p: &RawPolicy,
    scope: &Scope<'_>,
) -> Result<Arc<dyn Policy>, ConfigError> {
    let at = scope.at;
    let window = p.window_seconds.unwrap_or(60.0);
    let window = Duration::try_from_secs_f64(window)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ConfigError::new("window_seconds must be a positive number")
                .at(at.key(i, "window_seconds"))
        })?;
    let mut r = RateLimitPolicy::new(p.max_calls.unwrap_or(100), window).named(name);
    if let Some(b) = p.burst_size {
        r = r.burst(b);
    }
    if p.per_user == Some(true) {
        r = match p.user_key.as_deref() {
            None | Some("user.id" | "principal.id") => r.per_principal(),
            Some(path) => {
                let path = path.replacen("user.", "principal.", 1);
                r.key_fn(move |ctx| ctx.lookup(&path).map(|v| v.to_string()).unwrap_or_default())
            }
        };
    } else if p.user_key.is_some() {
        return Err(ConfigError::new("`user_key` needs `per_user: true`").at(at.key(i, "user_key")));
    }
    if p.shared == Some(true) {
        let backend = scope.shared_rate_limits.ok_or_else(|| {
            ConfigError::new(
                "`shared: true` needs a shared rate-limit backend (Redis or PostgreSQL), and none is configured",
            )
            .at(at.key(i, "shared"))
        })?;
        r = r.shared(Arc::clone(backend));
    }
    match p.on_backend_error.as_deref() {
        None => {}
        Some(_) if p.shared != Some(true) => {
            return Err(ConfigError::new("`on_backend_error` needs `shared: true`")
                .at(at.key(i, "on_backend_error")));
        }
        Some("deny") => r = r.on_backend_error(crate::policy::OnBackendError::Deny),
        Some("allow") => r = r.on_backend_error(crate::policy::OnBackendError::Allow),
        Some(other) => {
            return Err(ConfigError::new(format!(
                "`on_backend_error` is `deny` or `allow`, not `{other}`"
            ))
            .at(at.key(i, "on_backend_error")));
        }
    }
    Ok(Arc::new(r))
}

fn audit(
    i: usize,
    name: &str,
    p: &RawPolicy,
    phase: Option<PolicyPhase>,
    at: &Locator<'_>,
) -> Result<Arc<dyn Policy>, ConfigError> {
    let mut a = AuditPolicy::new()
        .named(name)
        .log_inputs(p.log_inputs.unwrap_or(true))
        .log_outputs(p.log_outputs.unwrap_or(true))
        .compliance_tags(p.compliance_tags.clone().unwrap_or_default());
    for (n, field) in p.sensitive_fields.iter().flatten().enumerate() {
        let bad = |what: String| {
            ConfigError::new(format!("`sensitive_fields[{n}]`: {what}"))
                .at(at.key(i, "sensitive_fields"))
        };
        a = match field {
            Value::String(f) => a.sensitive_fields([f.as_str()]),
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), "field" | "mask")) {
                    return Err(bad(format!(
                        "unknown key `{k}` (expected `field` and `mask`)"
                    )));
                }
                let f = m
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("needs `field`, the field's name".into()))?;
                let mask = m
                    .get("mask")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("needs `mask`: last4 or domain".into()))?
                    .parse::<crate::redact::Mask>()
                    .map_err(bad)?;
                a.mask(f, mask)
            }
            other => {
                return Err(bad(format!(
                    "expected a field name or {{field, mask}}, not {other}"
                )));
            }
        };
    }
    if let Some(phase) = phase {
        a = a.in_phase(phase);
    }
    Ok(Arc::new(a))
}

fn approval(
    i: usize,
    name: &str,
    p: &RawPolicy,
    scope: &Scope<'_>,
    governs: Option<&[String]>,
) -> Result<ApprovalPolicy, ConfigError> {
    let at = scope.at;
    let approvers = p.approvers.clone().unwrap_or_default();
    if approvers.is_empty() {
        return Err(
            ConfigError::new("an approval policy needs at least one approver")
                .at(at.key(i, "approvers")),
        );
    }
    let escalate_expires = match p.escalate_expires_in_seconds {
        None => Some(Duration::from_secs(3600)),
        Some(e) => e.duration().transpose().map_err(|()| {
            ConfigError::new("escalate_expires_in_seconds must be a non-negative number or `never`")
                .at(at.key(i, "escalate_expires_in_seconds"))
        })?,
    };
    let escalation = p.escalate_to.clone().map(|approvers| OnExpiry::Escalate {
        approvers,
        expires_in: escalate_expires,
    });
    let on_expiry = match (p.on_timeout.as_deref().unwrap_or("reject"), escalation) {
        ("reject", _) => OnExpiry::Reject,
        ("approve", _) => OnExpiry::Approve,
        ("escalate", Some(escalate)) => escalate,
        ("escalate", None) => {
            return Err(ConfigError::new(
                "on_timeout `escalate` needs `escalate_to` (the approvers to escalate to)",
            )
            .at(at.key(i, "on_timeout")));
        }
        (other, _) => {
            return Err(ConfigError::new(format!(
                "on_timeout `{other}` is not supported (expected reject, approve or escalate)"
            ))
            .at(at.key(i, "on_timeout")));
        }
    };
    if p.timeout_seconds.is_some() && p.expires_in_seconds.is_some() {
        return Err(ConfigError::new(
            "give either `timeout_seconds` or `expires_in_seconds`, not both",
        )
        .at(at.key(i, "expires_in_seconds")));
    }
    let expires = match p.expires_in_seconds {
        Some(e) => e.duration(),
        None => {
            Some(Duration::try_from_secs_f64(p.timeout_seconds.unwrap_or(3600.0)).map_err(|_| ()))
        }
    }
    .transpose()
    .map_err(|()| {
        let key = if p.expires_in_seconds.is_some() {
            "expires_in_seconds"
        } else {
            "timeout_seconds"
        };
        ConfigError::new(format!("{key} must be a non-negative number or `never`"))
            .at(at.key(i, key))
    })?;
    let wait = Duration::try_from_secs_f64(p.wait_seconds.unwrap_or(0.0)).map_err(|_| {
        ConfigError::new("wait_seconds must be a non-negative number").at(at.key(i, "wait_seconds"))
    })?;
    let mut policy = ApprovalPolicy::new(approvers)
        .named(name)
        .wait(wait)
        .expires_in(expires)
        .on_expiry(on_expiry)
        .require_reason(p.require_reason.unwrap_or(false))
        .quorum(p.quorum.unwrap_or(1), p.veto.unwrap_or(true))
        .allow_self_approval(p.allow_self_approval.unwrap_or(false))
        .allow_same_approver_across_stages(p.allow_same_approver_across_stages.unwrap_or(false));
    if let Some(source) = &p.auto_approve_when {
        policy = policy.auto_approve_if(scope.condition(
            i,
            "auto_approve_when",
            source,
            true,
            governs,
        )?);
    }
    if let Some(grants) = &p.grants {
        policy = policy.grants(grant_rules(grants).map_err(|e| e.at(at.key(i, "grants")))?);
    }
    if let Some(notify) = &p.notify {
        policy = policy.notify(notify_spec(notify).map_err(|e| e.at(at.key(i, "notify")))?);
    }
    Ok(policy)
}

/// A list of non-empty strings, if `value` is one.
fn names(value: &serde_json::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|c| c.as_str().filter(|c| !c.is_empty()).map(str::to_owned))
        .collect()
}

/// `notify: {channels, recipients, links, remind_before_seconds}`.
fn notify_spec(raw: &serde_json::Value) -> Result<crate::approval::NotifySpec, ConfigError> {
    const EXPECTED: &str = "`notify` takes {channels: [NAME, ...], recipients: [ADDRESS, ...], links: one_time | sign_in, remind_before_seconds: [N, ...]}";
    let serde_json::Value::Object(map) = raw else {
        return Err(ConfigError::new(EXPECTED));
    };
    let mut spec = crate::approval::NotifySpec::default();
    for (key, value) in map {
        match key.as_str() {
            "channels" => {
                spec.channels = names(value).ok_or_else(|| {
                    ConfigError::new("notify.channels must be a list of target names")
                })?;
            }
            "recipients" => {
                spec.recipients = names(value).ok_or_else(|| {
                    ConfigError::new("notify.recipients must be a list of addresses or names")
                })?;
            }
            "links" => {
                spec.links = serde_json::from_value(value.clone()).map_err(|_| {
                    ConfigError::new(format!(
                        "notify.links must be one_time or sign_in, not {value}"
                    ))
                })?;
            }
            "remind_before_seconds" => {
                spec.remind_before_seconds = value
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(serde_json::Value::as_u64)
                            .collect::<Option<Vec<_>>>()
                    })
                    .filter(|v| v.iter().all(|s| *s > 0))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "notify.remind_before_seconds must be a list of positive whole seconds",
                        )
                    })?;
            }
            other => {
                return Err(ConfigError::new(format!(
                    "unknown key `notify.{other}`: {EXPECTED}"
                )));
            }
        }
    }
    Ok(spec)
}

/// `grants: true|false` or `grants: {max_window_seconds, same_arguments_only}`.
fn grant_rules(raw: &serde_json::Value) -> Result<GrantRules, ConfigError> {
    const EXPECTED: &str =
        "`grants` takes true, false or {max_window_seconds: N, same_arguments_only: BOOL}";
    let map = match raw {
        serde_json::Value::Bool(true) => return Ok(GrantRules::default()),
        serde_json::Value::Bool(false) => return Ok(GrantRules::none()),
        serde_json::Value::Object(m) => m,
        _ => return Err(ConfigError::new(EXPECTED)),
    };
    let mut rules = GrantRules::default();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("max_window_seconds", v) => {
                let secs = v.as_f64().and_then(|s| Duration::try_from_secs_f64(s).ok());
                rules.max_window = Some(secs.ok_or_else(|| {
                    ConfigError::new("grants.max_window_seconds must be a non-negative number")
                })?);
            }
            ("same_arguments_only", serde_json::Value::Bool(b)) => rules.same_arguments_only = *b,
            ("same_arguments_only", _) => {
                return Err(ConfigError::new(
                    "grants.same_arguments_only must be true or false",
                ));
            }
            (other, _) => {
                return Err(ConfigError::new(format!(
                    "unknown key `grants.{other}`: {EXPECTED}"
                )));
            }
        }
    }
    Ok(rules)
}

fn shadowed(policy: Arc<dyn Policy>) -> Arc<dyn Policy> {
    Arc::new(policy.shadow())
}

#[cfg(all(test, feature = "cedar"))]
mod cedar_tests {
    use crate::config::Format;
    use crate::policy::Decision;
    use crate::policy::test_support::ctx;
    use crate::{PolicyFile, Principal};
    use serde_json::json;

    #[tokio::test]
    async fn cedar_text_and_files_in_policy_files_decide_calls() {
        let dir = std::env::temp_dir().join(format!("governor-cedar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = "@id(\"finance-can-pay\")\npermit(principal, action == Governor::Action::\"transfer\", resource)\nwhen { principal.roles.contains(\"finance\") };\n@id(\"cap\")\nforbid(principal, action, resource) when { context.amount > 10000 };\n";
        std::fs::write(dir.join("rules.cedar"), rules).unwrap();
        let yaml = "policies:\n  - type: authorization\n    name: CedarFile\n    cedar_file: rules.cedar\n";
        std::fs::write(dir.join("p.yaml"), yaml).unwrap();
        let from_file = PolicyFile::load(dir.join("p.yaml")).unwrap();
        let inline = PolicyFile::parse(
            &format!(
                "policies:\n  - type: authorization\n    name: CedarInline\n    cedar: |\n{}",
                rules
                    .lines()
                    .map(|l| format!("      {l}\n"))
                    .collect::<String>()
            ),
            Format::Yaml,
        )
        .unwrap();
        let ann = Principal::new("ann").with_roles(["finance"]);
        for file in [from_file, inline] {
            let policy = &file.entries[0].policy;
            let small = json!({"amount": 50});
            assert_eq!(policy.evaluate(&ctx(&small, &ann)).await, Decision::Allow);
            let big = json!({"amount": 50_000});
            let Decision::Deny(d) = policy.evaluate(&ctx(&big, &ann)).await else {
                panic!("the cap forbids")
            };
            assert_eq!(d.rule.as_deref(), Some("cedar:cap"));
        }
        let err = PolicyFile::parse(
            "policies:\n  - type: authorization\n    cedar: \"permit(\"\n",
            Format::Yaml,
        )
        .unwrap_err();
        assert!(err.message.contains("Cedar"), "{err}");
        assert_eq!(err.line, Some(3));
    }

    #[tokio::test]
    async fn cedar_forbid_refuses_an_edit_past_the_cap() {
        let yaml = "policies:\n  - type: authorization\n    name: Cap\n    cedar: |\n      permit(principal, action, resource) when { principal.roles.contains(\"finance\") };\n      @id(\"cap\")\n      forbid(principal, action, resource) when { context.amount > 10000 };\n  - type: approval\n    name: Cfo\n    approvers: [cfo]\n";
        let file = PolicyFile::parse(yaml, Format::Yaml).unwrap();
        let g = crate::Governor::builder().build().unwrap();
        let action = g
            .action("transfer")
            .policies(file.policies_for("transfer"))
            .resumable(|v: serde_json::Value| async move { Ok::<_, crate::GovernError>(v) })
            .build()
            .unwrap();
        let ann = Principal::new("ann").with_roles(["finance"]);
        let id = match action
            .run_as(ann, crate::Args::new().arg("amount", &500), || async {
                Ok::<_, crate::GovernError>(json!(null))
            })
            .await
        {
            Err(crate::GovernError::Pending { execution_id }) => execution_id,
            other => panic!("{other:?}"),
        };
        let err = g
            .approve_with_edits(
                id,
                &Principal::new("cfo"),
                json!({"amount": 50_000}),
                None,
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, crate::ApprovalError::InvalidEdit { reason, .. } if reason.contains("cap")),
            "{err}"
        );
        g.approve_with_edits(
            id,
            &Principal::new("cfo"),
            json!({"amount": 9_000}),
            None,
            None,
        )
        .await
        .unwrap();
    }
}
