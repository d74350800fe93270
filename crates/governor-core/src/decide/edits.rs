//! Approve with edits: the edited call passes every pre-execution policy
//! again, and approvals given for other arguments stop counting.

use chrono::{DateTime, Utc};

use super::{ApprovalError, Ask, Verdict};
use crate::approval::{ApprovalRequest, ApprovalSpec, ApprovalStage};
use crate::execution::{Execution, ExecutionId};
use crate::governor::Governor;
use crate::json::Json;
use crate::principal::Principal;
use crate::redact::REDACTED;

impl Governor {
    /// Approves with changed arguments (`edits`: the complete new arguments,
    /// an object bound by parameter name).
    ///
    /// The edits pass through every pre-execution policy of the action
    /// again (validation, authorization, Cedar, `when:` conditions, rate
    /// limits, custom policies): a denial refuses the edit
    /// ([`ApprovalError::InvalidEdit`]), and an approval policy that asks
    /// for the edited call but did not for the original adds its stage.
    /// Approvals given for other arguments no longer count, in this stage
    /// and every earlier one: their approvers are asked again. Only an edit
    /// by the decision that alone completes the last stage keeps them.
    ///
    /// The action then runs with the edits when resumed, while the
    /// execution's `inputs` keep what was asked for and the audit record
    /// of the decision keeps the edits. The action must be registered as
    /// resumable here; a caller that was still waiting gets `Pending` and
    /// the execution continues through resume.
    pub async fn approve_with_edits(
        &self,
        id: ExecutionId,
        approver: &Principal,
        edits: serde_json::Value,
        reason: Option<&str>,
        expected_digest: Option<&str>,
    ) -> Result<Execution, ApprovalError> {
        let execution = self.pending_execution(id).await?;
        let not_editable = |reason: &str| ApprovalError::NotEditable {
            execution_id: id,
            reason: reason.to_owned(),
        };
        let action = self
            .registered(&execution.action)
            .ok_or_else(|| not_editable("its action is not registered as resumable here"))?;
        if !edits.is_object() {
            return Err(ApprovalError::InvalidEdit {
                execution_id: id,
                reason: "edits must be an object of named arguments".into(),
            });
        }
        let mut redactor = action.redactor.clone();
        redactor.absorb(self.redactor());
        let stored = execution
            .approval
            .as_ref()
            .map_or(&execution.inputs, |a| a.will_run(&execution.inputs))
            .clone();
        let sensitive = stored.as_str().contains(REDACTED) || redactor.redact(&edits) != edits;
        let (clear, now, sealed) = if sensitive {
            self.sealed_edits(&execution, &redactor, &stored, edits)?
        } else {
            let now = stored.value();
            (edits, now, None)
        };
        let new_stages = recheck_edits(&action, &execution, &clear).await?;
        let mut ask = Ask::new(Verdict::Approve, reason, expected_digest);
        ask.edit = Some(Edit {
            stored: Json::from(&redactor.redact(&clear)),
            sealed,
            unchanged: clear == now,
            new_stages,
        });
        self.record_decision(execution, approver, ask).await
    }

    /// Edits of arguments that hold sensitive fields: the approver saw
    /// them redacted, so a field still `[REDACTED]` in `edits` keeps the
    /// value it has now (opened from the sealed arguments), while a new
    /// value replaces it. Returns the edited arguments in clear (for the
    /// policies), the current ones in clear, and the edited ones sealed
    /// (what the runner opens), so nothing sensitive is stored in clear.
    fn sealed_edits(
        &self,
        execution: &Execution,
        redactor: &crate::redact::Redactor,
        stored: &Json,
        edits: serde_json::Value,
    ) -> Result<(serde_json::Value, serde_json::Value, Option<String>), ApprovalError> {
        let id = execution.id;
        let not_editable = |reason: &str| ApprovalError::NotEditable {
            execution_id: id,
            reason: reason.to_owned(),
        };
        let key = self.seal_key().ok_or_else(|| {
            not_editable(
                "its arguments hold sensitive fields, and this governor has no seal key to keep the edited ones",
            )
        })?;
        let now = if stored.as_str().contains(REDACTED) {
            let sealed = execution
                .approval
                .as_ref()
                .and_then(|a| a.sealed_inputs.as_deref())
                .ok_or_else(|| not_editable("its sensitive arguments were not sealed"))?;
            let opened = key
                .open(execution, sealed)
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .ok_or_else(|| {
                    not_editable("its sealed arguments cannot be opened with this key")
                })?;
            if redactor.redact(&opened) != stored.value() {
                return Err(not_editable("its sealed arguments are not the stored ones"));
            }
            opened
        } else {
            stored.value()
        };
        let clear = keep_redacted(edits, &now).map_err(|path| ApprovalError::InvalidEdit {
            execution_id: id,
            reason: format!(
                "`{path}` is {REDACTED} (or masked), but the request has no value there that it shows"
            ),
        })?;
        let sealed = key
            .seal(execution, &clear.to_string())
            .ok_or_else(|| not_editable("the edited arguments could not be sealed"))?;
        Ok((clear, now, Some(sealed)))
    }
}

/// An approver's edit, checked and ready to record.
pub(super) struct Edit {
    /// The edited arguments as stored: sensitive fields redacted.
    stored: Json,
    /// The edited arguments in clear, sealed, when they hold sensitive
    /// fields (the runner opens these).
    sealed: Option<String>,
    /// Whether the edit changes nothing that would run.
    unchanged: bool,
    /// Stages the edited call needs that the request does not have.
    new_stages: Vec<ApprovalSpec>,
}

/// `edits` with every `[REDACTED]` replaced by the value at the same place
/// in `now`; `Err(path)` where `now` has none.
fn keep_redacted(
    edits: serde_json::Value,
    now: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let at = |key: String, path: String| {
        if path.is_empty() {
            key
        } else {
            format!("{key}.{path}")
        }
    };
    match edits {
        // A masked value (`***REDACTED***1234`) left as shown keeps the
        // value too; one whose visible part no longer matches is a new
        // value nobody can give this way.
        Value::String(s) if s.starts_with(REDACTED) => match now {
            Value::Null => Err(String::new()),
            kept if shows(kept, &s[REDACTED.len()..]) => Ok(kept.clone()),
            _ => Err(String::new()),
        },
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let there = now.get(&k).unwrap_or(&Value::Null);
                match keep_redacted(v, there) {
                    Ok(v) => Ok((k, v)),
                    Err(path) => Err(at(k, path)),
                }
            })
            .collect::<Result<_, _>>()
            .map(Value::Object),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let there = now.get(i).unwrap_or(&Value::Null);
                keep_redacted(v, there).map_err(|path| at(i.to_string(), path))
            })
            .collect::<Result<_, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

/// Whether `value`, masked, shows `kept` (its visible end).
fn shows(value: &serde_json::Value, kept: &str) -> bool {
    match value {
        serde_json::Value::String(v) => v
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .ends_with(kept),
        serde_json::Value::Number(n) => n.to_string().ends_with(kept),
        _ => kept.is_empty(),
    }
}

/// Runs every pre-execution policy of `action` against `edits`, as the
/// call would have run them had it been made with the edits. Returns the
/// approvals the edited call needs that the request does not have yet.
/// Nothing is counted: what a policy took (a rate limit's cell) is given
/// back, since the call was already counted when it was made.
async fn recheck_edits(
    action: &crate::action::Action,
    execution: &Execution,
    edits: &serde_json::Value,
) -> Result<Vec<ApprovalSpec>, ApprovalError> {
    use crate::policy::{Decision, PolicyContext, PolicyPhase};
    let ctx = PolicyContext {
        execution_id: execution.id,
        action: &execution.action,
        phase: PolicyPhase::PreExecution,
        input: edits,
        output: None,
        principal: &execution.principal,
    };
    let asked = execution.approval.as_ref();
    let mut allowed = Vec::new();
    let mut new_stages = Vec::new();
    let mut denial = None;
    for policy in action.policies.iter() {
        if !policy.phase().applies_to(PolicyPhase::PreExecution) || policy.is_shadow() {
            continue;
        }
        match policy.evaluate(&ctx).await {
            Decision::Allow => allowed.push(policy),
            Decision::Warn(_) => {}
            Decision::Deny(d) => {
                denial = Some(format!(
                    "policy `{}` denies them: {}",
                    policy.name(),
                    d.reason
                ));
                break;
            }
            Decision::RequireApproval(spec) => {
                let known =
                    asked.is_some_and(|r| r.stages.iter().any(|s| s.spec.policy == spec.policy));
                if !known {
                    new_stages.push(spec);
                }
            }
        }
    }
    for policy in allowed {
        policy.release(&ctx);
    }
    match denial {
        Some(reason) => Err(ApprovalError::InvalidEdit {
            execution_id: execution.id,
            reason,
        }),
        None => Ok(new_stages),
    }
}

/// Makes the edit what `request` approves; returns the edited arguments
/// as stored. Approvals given for other
/// arguments stop counting, in every stage, so their approvers are asked
/// again; only an edit by the decision that alone completes the last
/// stage keeps them (nobody is left to ask). Stages the edited call newly
/// needs are added at the end.
pub(super) fn apply_edits(
    request: &mut ApprovalRequest,
    e: &Execution,
    index: usize,
    edit: Edit,
    now: DateTime<Utc>,
) -> Json {
    let Edit {
        stored,
        sealed,
        unchanged,
        new_stages,
    } = edit;
    let completes_alone = new_stages.is_empty()
        && index + 1 == request.stages.len()
        && request.stages[index].spec.quorum <= 1;
    if !completes_alone && !unchanged {
        for decision in request
            .stages
            .iter_mut()
            .flat_map(|s| s.decisions.iter_mut())
        {
            if decision.approved {
                decision.superseded = true;
            }
        }
    }
    request.stages.extend(
        new_stages
            .into_iter()
            .map(|spec| ApprovalStage::open(spec, now)),
    );
    request.edited_inputs = Some(stored.clone());
    if let Some(sealed) = sealed {
        request.sealed_inputs = Some(sealed);
    }
    // What is approved now is the edited call.
    if let Some(version) = request.policy_version.clone() {
        request.bind(e, &stored, &version);
    }
    stored
}
