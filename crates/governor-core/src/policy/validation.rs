//! Input and output validation: JSON Schema and custom validators.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde_json::Value;

use super::{Decision, Denial, FieldError, Policy, PolicyContext, PolicyKind, PolicyPhase};
use crate::error::GovernError;

type Validator = Arc<dyn Fn(&Value) -> Vec<FieldError> + Send + Sync>;

/// What a custom validator closure may return.
pub trait IntoViolations {
    /// The failing fields; empty when valid.
    fn into_violations(self) -> Vec<FieldError>;
}

impl IntoViolations for bool {
    fn into_violations(self) -> Vec<FieldError> {
        if self {
            Vec::new()
        } else {
            vec![FieldError::new("", "custom validator returned false")]
        }
    }
}

impl IntoViolations for Result<(), String> {
    fn into_violations(self) -> Vec<FieldError> {
        self.err()
            .map(|m| vec![FieldError::new("", m)])
            .unwrap_or_default()
    }
}

impl IntoViolations for Result<(), Vec<FieldError>> {
    fn into_violations(self) -> Vec<FieldError> {
        self.err().unwrap_or_default()
    }
}

impl IntoViolations for Vec<FieldError> {
    fn into_violations(self) -> Vec<FieldError> {
        self
    }
}

#[derive(Default, Clone)]
struct Checks {
    schema: Option<Arc<jsonschema::Validator>>,
    /// The schema's text, for the policy's fingerprint.
    schema_text: String,
    /// The schema as given, for clients.
    schema_value: Option<Arc<Value>>,
    validators: Vec<Validator>,
}

impl Checks {
    fn is_empty(&self) -> bool {
        self.schema.is_none() && self.validators.is_empty()
    }

    fn violations(&self, value: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        if let Some(schema) = &self.schema {
            // `masked` keeps the offending value out of the message: error
            // text is stored and must not leak what redaction hides.
            out.extend(
                schema
                    .iter_errors(value)
                    .map(|e| FieldError::new(e.instance_path().as_str(), e.masked().to_string())),
            );
        }
        for v in &self.validators {
            out.extend(v(value));
        }
        out
    }
}

/// Validates inputs before the action runs and outputs after it returns.
///
/// Inputs are the arguments bound by parameter name, so a schema for
/// `async fn transfer(amount: f64, to: String)` describes an object with
/// `amount` and `to`. Schemas can be derived from Rust types (schemars) or
/// given as JSON. In strict mode (the default) any failure denies the call
/// and lists every failing field; otherwise it is recorded as a warning.
#[derive(Clone)]
pub struct ValidationPolicy {
    name: String,
    strict: bool,
    input: Checks,
    output: Checks,
    phase: Option<PolicyPhase>,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ValidationPolicy {
    /// A strict validation policy with no checks yet.
    pub fn new() -> Self {
        Self {
            name: "ValidationPolicy".into(),
            strict: true,
            input: Checks::default(),
            output: Checks::default(),
            phase: None,
        }
    }

    /// Sets the policy's name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Block on failure (`true`, default) or only warn.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Restricts the phases it runs in (by default: wherever it has checks).
    #[must_use]
    pub fn in_phase(mut self, phase: PolicyPhase) -> Self {
        self.phase = Some(phase);
        self
    }

    /// Validates inputs against a JSON Schema document.
    pub fn input_schema(mut self, schema: &Value) -> Result<Self, GovernError> {
        self.input.schema = Some(compile(&self.name, "input", schema)?);
        self.input.schema_text = schema.to_string();
        self.input.schema_value = Some(Arc::new(schema.clone()));
        Ok(self)
    }

    /// Validates inputs against the schema of `T` (a struct whose fields are
    /// the action's parameters).
    pub fn input_schema_for<T: JsonSchema>(self) -> Result<Self, GovernError> {
        let schema = schema_value::<T>()?;
        self.input_schema(&schema)
    }

    /// Validates outputs against a JSON Schema document.
    pub fn output_schema(mut self, schema: &Value) -> Result<Self, GovernError> {
        self.output.schema = Some(compile(&self.name, "output", schema)?);
        self.output.schema_text = schema.to_string();
        Ok(self)
    }

    /// Validates outputs against the schema of `T`.
    pub fn output_schema_for<T: JsonSchema>(self) -> Result<Self, GovernError> {
        let schema = schema_value::<T>()?;
        self.output_schema(&schema)
    }

    /// Adds a custom input validator. It may return `bool`,
    /// `Result<(), String>` or a list of [`FieldError`]s.
    #[must_use]
    pub fn input_validator<F, R>(mut self, f: F) -> Self
    where
        F: Fn(&Value) -> R + Send + Sync + 'static,
        R: IntoViolations,
    {
        self.input
            .validators
            .push(Arc::new(move |v| f(v).into_violations()));
        self
    }

    /// Adds a custom output validator.
    #[must_use]
    pub fn output_validator<F, R>(mut self, f: F) -> Self
    where
        F: Fn(&Value) -> R + Send + Sync + 'static,
        R: IntoViolations,
    {
        self.output
            .validators
            .push(Arc::new(move |v| f(v).into_violations()));
        self
    }

    /// Whether any check is configured.
    pub fn has_checks(&self) -> bool {
        !self.input.is_empty() || !self.output.is_empty()
    }
}

fn schema_value<T: JsonSchema>() -> Result<Value, GovernError> {
    serde_json::to_value(schemars::schema_for!(T))
        .map_err(|e| GovernError::Config(format!("schema of `{}`: {e}", T::schema_name())))
}

fn compile(
    policy: &str,
    what: &str,
    schema: &Value,
) -> Result<Arc<jsonschema::Validator>, GovernError> {
    jsonschema::validator_for(schema)
        .map(Arc::new)
        .map_err(|e| {
            GovernError::Config(format!(
                "{what} schema of policy `{policy}` is invalid: {e}"
            ))
        })
}

impl ValidationPolicy {
    /// The decision about the inputs (pre-execution) or output (post).
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        let (checks, value, what) = match (ctx.phase, ctx.output) {
            (PolicyPhase::PostExecution, Some(out)) => (&self.output, out, "output"),
            (PolicyPhase::PostExecution, None) => return Decision::Allow,
            _ => (&self.input, ctx.input, "input"),
        };
        let violations = checks.violations(value);
        if violations.is_empty() {
            return Decision::Allow;
        }
        let reason = format!(
            "{what} validation failed: {}",
            FieldError::join(&violations)
        );
        if self.strict {
            Decision::Deny(
                Denial::new(reason)
                    .rule(format!("{what}_schema"))
                    .violations(violations),
            )
        } else {
            Decision::Warn(reason)
        }
    }
}

#[async_trait]
impl Policy for ValidationPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> PolicyKind {
        PolicyKind::Validation
    }

    fn phase(&self) -> PolicyPhase {
        if let Some(phase) = self.phase {
            return phase;
        }
        match (self.input.is_empty(), self.output.is_empty()) {
            (false, true) | (true, true) => PolicyPhase::PreExecution,
            (true, false) => PolicyPhase::PostExecution,
            (false, false) => PolicyPhase::Both,
        }
    }

    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        self.decide(ctx)
    }
    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        Some(self.decide(ctx))
    }
    fn reads_output(&self) -> bool {
        !self.output.is_empty()
    }
    fn input_schema(&self) -> Option<&Value> {
        self.input.schema_value.as_deref()
    }

    fn fingerprint(&self) -> String {
        format!(
            "strict {} phase {:?} input {} +{} output {} +{}",
            self.strict,
            self.phase,
            self.input.schema_text,
            self.input.validators.len(),
            self.output.schema_text,
            self.output.validators.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use crate::policy::test_support::ctx;
    use serde_json::json;

    #[derive(JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Transfer {
        amount: f64,
        recipient: String,
    }

    #[tokio::test]
    async fn derived_schema_passes_valid_input_and_lists_every_bad_field() {
        let p = ValidationPolicy::new()
            .input_schema_for::<Transfer>()
            .unwrap();
        let who = Principal::new("a");
        let ok = json!({"amount": 5.0, "recipient": "Acme"});
        assert_eq!(p.evaluate(&ctx(&ok, &who)).await, Decision::Allow);

        let bad = json!({"amount": "lots", "recipient": 7});
        let Decision::Deny(d) = p.evaluate(&ctx(&bad, &who)).await else {
            panic!("not denied")
        };
        let paths: Vec<_> = d.violations.iter().map(|v| v.path.as_str()).collect();
        assert!(
            paths.contains(&"/amount") && paths.contains(&"/recipient"),
            "{paths:?}"
        );
        assert!(
            !d.reason.contains("lots"),
            "value leaked into reason: {}",
            d.reason
        );
    }

    #[tokio::test]
    async fn custom_validator_and_non_strict_mode_warns() {
        let p = ValidationPolicy::new()
            .strict(false)
            .input_validator(|i: &Value| i["amount"].as_f64().is_some_and(|a| a < 10_000.0));
        let who = Principal::new("a");
        let big = json!({"amount": 50_000});
        assert!(matches!(
            p.evaluate(&ctx(&big, &who)).await,
            Decision::Warn(_)
        ));
        let small = json!({"amount": 5});
        assert_eq!(p.evaluate(&ctx(&small, &who)).await, Decision::Allow);
    }

    #[tokio::test]
    async fn output_schema_checked_after_execution() {
        let p = ValidationPolicy::new()
            .output_schema(&json!({"type": "object", "required": ["status"]}))
            .unwrap();
        assert_eq!(p.phase(), PolicyPhase::PostExecution);
        let who = Principal::new("a");
        let input = json!({});
        let out = json!({"nope": 1});
        let mut c = ctx(&input, &who);
        c.phase = PolicyPhase::PostExecution;
        c.output = Some(&out);
        let Decision::Deny(d) = p.evaluate(&c).await else {
            panic!("not denied")
        };
        assert_eq!(d.rule.as_deref(), Some("output_schema"));
    }

    #[test]
    fn invalid_schema_is_a_config_error() {
        let err = ValidationPolicy::new()
            .input_schema(&json!({"type": 12}))
            .err()
            .unwrap();
        assert!(err.to_string().contains("input schema"), "{err}");
    }
}
