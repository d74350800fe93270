//! Policies from YAML and JSON files, in the seed's format.
//!
//! Every key the seed's files use is honoured, and nothing is silently
//! ignored: an unknown key, a wrong type, an unknown policy type or phase
//! is an error naming the file, line, column and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::approval::{ApprovalPolicy, OnExpiry};
use crate::policy::{
    AuditPolicy, AuthorizationPolicy, Policy, PolicyExt, PolicyKind, PolicyPhase, RateLimitPolicy,
    ValidationPolicy,
};

/// A policy file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(.file.as_deref(), *.line, *.column))]
pub struct ConfigError {
    /// The file, when loading from one.
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

fn location(file: Option<&Path>, line: Option<usize>, column: Option<usize>) -> String {
    let mut s = file.map(|f| f.display().to_string()).unwrap_or_default();
    if let Some(l) = line {
        if !s.is_empty() {
            s.push(':');
        }
        s.push_str(&l.to_string());
        if let Some(c) = column {
            s.push_str(&format!(":{c}"));
        }
    }
    if !s.is_empty() {
        s.push_str(": ");
    }
    s
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn at(mut self, pos: Option<(usize, usize)>) -> Self {
        if let Some((l, c)) = pos {
            self.line = Some(l);
            self.column = Some(c);
        }
        self
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }
}

/// The syntax of a policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (also accepts JSON, which is YAML).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format for a file name: `.json`, `.yaml` or `.yml`.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Ok(Self::Json),
            Some("yaml" | "yml") => Ok(Self::Yaml),
            _ => Err(ConfigError::new(
                "unsupported policy file type (expected .yaml, .yml or .json)",
            )
            .in_file(path)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    policies: Vec<RawPolicy>,
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    last_updated: Option<Value>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    industry: Option<String>,
    #[serde(default)]
    compliance_frameworks: Option<Vec<String>>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// One entry: the union of every policy type's keys; which keys a type
/// accepts is checked after parsing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    enabled: Option<bool>,
    phase: Option<String>,
    description: Option<String>,
    shadow: Option<bool>,
    // validation
    strict: Option<bool>,
    input_schema: Option<Value>,
    output_schema: Option<Value>,
    // authorization
    required_roles: Option<Vec<String>>,
    required_permissions: Option<Vec<String>>,
    context_key: Option<String>,
    require_approval_on_failure: Option<bool>,
    // rate limit
    max_calls: Option<u32>,
    window_seconds: Option<f64>,
    per_user: Option<bool>,
    user_key: Option<String>,
    burst_size: Option<u32>,
    // audit
    log_inputs: Option<bool>,
    log_outputs: Option<bool>,
    sensitive_fields: Option<Vec<String>>,
    compliance_tags: Option<Vec<String>>,
    // approval (and authorization's approval on failure)
    approvers: Option<Vec<String>>,
    timeout_seconds: Option<f64>,
    on_timeout: Option<String>,
    require_reason: Option<bool>,
    // approval additions (the approvals issue)
    wait_seconds: Option<f64>,
    expires_in_seconds: Option<ExpiresIn>,
    escalate_to: Option<Vec<String>>,
    escalate_expires_in_seconds: Option<ExpiresIn>,
    quorum: Option<u32>,
    veto: Option<bool>,
    allow_self_approval: Option<bool>,
}

/// Seconds, or `never`.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum ExpiresIn {
    Seconds(f64),
    Never(Never),
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Never {
    Never,
}

impl ExpiresIn {
    fn duration(self) -> Option<Result<Duration, ()>> {
        match self {
            Self::Seconds(s) => Some(Duration::try_from_secs_f64(s).map_err(|_| ())),
            Self::Never(Never::Never) => None,
        }
    }
}

/// One loaded policy with what the file said about it.
#[derive(Clone)]
pub struct LoadedPolicy {
    /// The policy's name.
    pub name: String,
    /// Its type.
    pub kind: PolicyKind,
    /// The file's description.
    pub description: Option<String>,
    /// Whether `enabled: false` switched it off (then it is not in
    /// [`PolicyFile::policies`]).
    pub enabled: bool,
    /// Things worth knowing that are not errors.
    pub warnings: Vec<String>,
    /// The policy itself.
    pub policy: Arc<dyn Policy>,
}

impl fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A loaded policy file.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// Every entry, enabled or not, in file order.
    pub entries: Vec<LoadedPolicy>,
    /// Top-level metadata (`version`, `environment`, `metadata`, ...).
    pub metadata: Map<String, Value>,
}

impl PolicyFile {
    /// Loads a `.yaml`, `.yml` or `.json` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let format = Format::from_path(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read policy file: {e}")).in_file(path))?;
        Self::parse(&text, format).map_err(|e| e.in_file(path))
    }

    /// Parses a document.
    pub fn parse(text: &str, format: Format) -> Result<Self, ConfigError> {
        let raw: RawFile = match format {
            Format::Json => serde_json::from_str(text).map_err(|e| {
                ConfigError::new(strip_position(&e.to_string())).at(Some((e.line(), e.column())))
            })?,
            Format::Yaml => yaml_serde::from_str(text).map_err(|e| {
                let pos = e.location().map(|l| (l.line(), l.column()));
                ConfigError::new(strip_position(&e.to_string())).at(pos)
            })?,
        };
        build(raw, text)
    }

    /// Builds from an in-memory value (the seed's `load_policies_from_dict`).
    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        let raw: RawFile =
            serde_json::from_value(value).map_err(|e| ConfigError::new(e.to_string()))?;
        build(raw, "")
    }

    /// The enabled policies, in file order.
    pub fn policies(&self) -> Vec<Arc<dyn Policy>> {
        self.entries
            .iter()
            .filter(|e| e.enabled)
            .map(|e| Arc::clone(&e.policy))
            .collect()
    }
}

/// Loads the enabled policies of a YAML or JSON file.
pub fn load_policies_from_file(
    path: impl AsRef<Path>,
) -> Result<Vec<Arc<dyn Policy>>, ConfigError> {
    PolicyFile::load(path).map(|f| f.policies())
}

/// Loads the enabled policies of an in-memory document
/// (`{"policies": [...]}`).
pub fn load_policies_from_value(value: Value) -> Result<Vec<Arc<dyn Policy>>, ConfigError> {
    PolicyFile::from_value(value).map(|f| f.policies())
}

/// Both parsers append " at line L column C"; the position is reported
/// separately.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn build(raw: RawFile, text: &str) -> Result<PolicyFile, ConfigError> {
    let mut metadata = raw.metadata.unwrap_or_default();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            metadata.insert(k.to_owned(), v);
        }
    };
    put("version", raw.version);
    put("environment", raw.environment.map(Value::from));
    put("description", raw.description.map(Value::from));
    put("last_updated", raw.last_updated);
    put("owner", raw.owner.map(Value::from));
    put("industry", raw.industry.map(Value::from));
    put(
        "compliance_frameworks",
        raw.compliance_frameworks.map(Value::from),
    );
    let locator = Locator::new(text);
    let mut entries = Vec::with_capacity(raw.policies.len());
    let mut names: Vec<String> = Vec::new();
    for (i, p) in raw.policies.into_iter().enumerate() {
        let entry = entry(i, p, &locator)?;
        if names.contains(&entry.name) {
            return Err(ConfigError::new(format!(
                "policy name `{}` is used twice; names must be unique",
                entry.name
            ))
            .at(locator.key(i, "name")));
        }
        names.push(entry.name.clone());
        entries.push(entry);
    }
    Ok(PolicyFile { entries, metadata })
}

/// Finds where an entry's keys are in the source text, for error
/// positions after parsing.
struct Locator<'a> {
    lines: Vec<&'a str>,
    starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let starts = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let t = l
                    .trim_start()
                    .trim_start_matches("- ")
                    .trim_start_matches('{')
                    .trim_start();
                (t.starts_with("type:") || t.starts_with("\"type\""))
                    && !l.trim_start().starts_with('#')
            })
            .map(|(n, _)| n)
            .collect();
        Self { lines, starts }
    }

    /// The position of `key` inside entry `i` (or the entry's start).
    /// Entries usually open with `type`; keys written before it are
    /// looked for on the few lines above.
    fn key(&self, i: usize, key: &str) -> Option<(usize, usize)> {
        let start = *self.starts.get(i)?;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.lines.len());
        let floor = if i == 0 { 0 } else { self.starts[i - 1] + 1 };
        self.find(key, start..end)
            .or_else(|| self.find(key, start.saturating_sub(5).max(floor)..start))
            .or(Some((start + 1, 1)))
    }

    fn find(&self, key: &str, lines: std::ops::Range<usize>) -> Option<(usize, usize)> {
        let patterns = [format!("{key}:"), format!("\"{key}\"")];
        lines.into_iter().find_map(|n| {
            let line = self.lines.get(n)?;
            patterns.iter().find_map(|pat| {
                let col = line.find(pat.as_str())?;
                let before = line[..col].trim_matches([' ', '-', '{', ',', '\t']);
                before.is_empty().then_some((n + 1, col + 1))
            })
        })
    }
}

fn entry(i: usize, p: RawPolicy, at: &Locator<'_>) -> Result<LoadedPolicy, ConfigError> {
    let kind = match p.kind.to_ascii_lowercase().as_str() {
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
    };
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
    let mut warnings = Vec::new();
    let policy: Arc<dyn Policy> = match kind {
        PolicyKind::Validation => validation(i, &name, &p, phase, at, &mut warnings)?,
        PolicyKind::Authorization => authorization(i, &name, &p, at)?,
        PolicyKind::RateLimit => rate_limit(i, &name, &p, at)?,
        PolicyKind::Audit => audit(&name, &p, phase),
        _ => approval(i, &name, &p, at)?,
    };
    let policy = if p.shadow == Some(true) {
        shadowed(policy)
    } else {
        policy
    };
    Ok(LoadedPolicy {
        name,
        kind,
        description: p.description,
        enabled: p.enabled.unwrap_or(true),
        warnings,
        policy,
    })
}

fn check_keys(
    i: usize,
    kind: PolicyKind,
    p: &RawPolicy,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let present: [(&str, bool); 29] = [
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
        ("log_inputs", p.log_inputs.is_some()),
        ("log_outputs", p.log_outputs.is_some()),
        ("sensitive_fields", p.sensitive_fields.is_some()),
        ("compliance_tags", p.compliance_tags.is_some()),
        ("approvers", p.approvers.is_some()),
        ("timeout_seconds", p.timeout_seconds.is_some()),
        ("on_timeout", p.on_timeout.is_some()),
        ("require_reason", p.require_reason.is_some()),
        ("phase", p.phase.is_some()),
        ("shadow", false),
    ];
    let allowed: &[&str] = match kind {
        PolicyKind::Validation => &["strict", "input_schema", "output_schema", "phase"],
        PolicyKind::Authorization => &[
            "required_roles",
            "required_permissions",
            "context_key",
            "require_approval_on_failure",
            "approvers",
        ],
        PolicyKind::RateLimit => &[
            "max_calls",
            "window_seconds",
            "per_user",
            "user_key",
            "burst_size",
        ],
        PolicyKind::Audit => &[
            "log_inputs",
            "log_outputs",
            "sensitive_fields",
            "compliance_tags",
            "phase",
        ],
        _ => &[
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
        ],
    };
    for (key, set) in present {
        if set && !allowed.contains(&key) {
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
    at: &Locator<'_>,
) -> Result<Arc<dyn Policy>, ConfigError> {
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
    Ok(Arc::new(a))
}

fn rate_limit(
    i: usize,
    name: &str,
    p: &RawPolicy,
    at: &Locator<'_>,
) -> Result<Arc<dyn Policy>, ConfigError> {
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
    Ok(Arc::new(r))
}

fn audit(name: &str, p: &RawPolicy, phase: Option<PolicyPhase>) -> Arc<dyn Policy> {
    let mut a = AuditPolicy::new()
        .named(name)
        .log_inputs(p.log_inputs.unwrap_or(true))
        .log_outputs(p.log_outputs.unwrap_or(true))
        .sensitive_fields(p.sensitive_fields.clone().unwrap_or_default())
        .compliance_tags(p.compliance_tags.clone().unwrap_or_default());
    if let Some(phase) = phase {
        a = a.in_phase(phase);
    }
    Arc::new(a)
}

fn approval(
    i: usize,
    name: &str,
    p: &RawPolicy,
    at: &Locator<'_>,
) -> Result<Arc<dyn Policy>, ConfigError> {
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
    Ok(Arc::new(
        ApprovalPolicy::new(approvers)
            .named(name)
            .wait(wait)
            .expires_in(expires)
            .on_expiry(on_expiry)
            .require_reason(p.require_reason.unwrap_or(false))
            .quorum(p.quorum.unwrap_or(1), p.veto.unwrap_or(true))
            .allow_self_approval(p.allow_self_approval.unwrap_or(false)),
    ))
}

fn shadowed(policy: Arc<dyn Policy>) -> Arc<dyn Policy> {
    Arc::new(policy.shadow())
}
