//! Audit settings: what the audit record keeps and what is redacted.

use async_trait::async_trait;

use super::{Decision, Policy, PolicyContext, PolicyKind, PolicyPhase};

/// What an execution's audit record contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Keep the (redacted) inputs in the audit record.
    pub log_inputs: bool,
    /// Keep the (redacted) output in the audit record.
    pub log_outputs: bool,
    /// Tags such as `GDPR`, `SOC2` attached to the record.
    pub compliance_tags: Vec<String>,
}

/// Records calls for compliance: the (redacted) inputs and outputs, with
/// compliance tags, in the store's hash-chained audit log.
///
/// Its `sensitive_fields` are redacted everywhere — stored executions,
/// snapshots, events, logs and the audit record — not only in the audit
/// record. Matching is by key name, case-insensitive, at any depth,
/// including inside arrays.
#[derive(Debug, Clone)]
pub struct AuditPolicy {
    name: String,
    phase: PolicyPhase,
    settings: AuditSettings,
    sensitive_fields: Vec<String>,
    masks: Vec<(String, crate::redact::Mask)>,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditPolicy {
    /// Logs inputs and outputs with no redaction and no tags.
    pub fn new() -> Self {
        Self {
            name: "AuditPolicy".into(),
            phase: PolicyPhase::Both,
            settings: AuditSettings {
                log_inputs: true,
                log_outputs: true,
                compliance_tags: Vec::new(),
            },
            sensitive_fields: Vec::new(),
            masks: Vec::new(),
        }
    }

    /// Sets the policy's name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the phase (kept for the seed's configuration files; the audit
    /// record is written once per execution either way).
    #[must_use]
    pub fn in_phase(mut self, phase: PolicyPhase) -> Self {
        self.phase = phase;
        self
    }

    /// Keep inputs in the audit record.
    #[must_use]
    pub fn log_inputs(mut self, yes: bool) -> Self {
        self.settings.log_inputs = yes;
        self
    }

    /// Keep outputs in the audit record.
    #[must_use]
    pub fn log_outputs(mut self, yes: bool) -> Self {
        self.settings.log_outputs = yes;
        self
    }

    /// Field names to redact everywhere.
    #[must_use]
    pub fn sensitive_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sensitive_fields
            .extend(fields.into_iter().map(Into::into));
        self
    }

    /// Makes `field` sensitive, keeping the part `mask` shows
    /// (`Mask::Last4` for an IBAN, `Mask::Domain` for an email), so an
    /// approver can check it without seeing the rest.
    #[must_use]
    pub fn mask(mut self, field: impl Into<String>, mask: crate::redact::Mask) -> Self {
        let field = field.into();
        self.masks.retain(|(f, _)| !f.eq_ignore_ascii_case(&field));
        self.sensitive_fields.push(field.clone());
        self.masks.push((field, mask));
        self
    }

    /// Compliance tags for the audit record.
    #[must_use]
    pub fn compliance_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings
            .compliance_tags
            .extend(tags.into_iter().map(Into::into));
        self
    }
}

#[async_trait]
impl Policy for AuditPolicy {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> PolicyKind {
        PolicyKind::Audit
    }
    fn phase(&self) -> PolicyPhase {
        self.phase
    }
    async fn evaluate(&self, _ctx: &PolicyContext<'_>) -> Decision {
        Decision::Allow
    }
    fn evaluate_now(&self, _ctx: &PolicyContext<'_>) -> Option<Decision> {
        Some(Decision::Allow)
    }
    fn reads_output(&self) -> bool {
        // The audit record takes the result from the call itself.
        false
    }
    fn sensitive_fields(&self) -> &[String] {
        &self.sensitive_fields
    }
    fn masks(&self) -> &[(String, crate::redact::Mask)] {
        &self.masks
    }
    fn audit_settings(&self) -> Option<&AuditSettings> {
        Some(&self.settings)
    }
    fn fingerprint(&self) -> String {
        if self.masks.is_empty() {
            format!("{:?} {:?}", self.settings, self.sensitive_fields)
        } else {
            format!(
                "{:?} {:?} {:?}",
                self.settings, self.sensitive_fields, self.masks
            )
        }
    }
}
