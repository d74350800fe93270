//! A request as a few lines of text: what every channel without the
//! console (email, chat, a link's confirmation page, the CLI) tells an
//! approver, built once so that they all tell the same.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::approval::ApprovalRequest;
use crate::display::{Display, lookup, rows};
use crate::execution::Execution;
use crate::governor::Governor;
use crate::json::Json;

/// What an approver is asked, as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Brief {
    /// The action's title for these arguments ("Wire €93,231.00 to
    /// Globex"), or the action's name.
    pub title: String,
    /// The governed action.
    pub action: String,
    /// Who asked.
    pub requester: String,
    /// The arguments that will run, as (label, text) rows, sensitive ones
    /// redacted or masked.
    pub rows: Vec<(String, String)>,
    /// Whether an approver edited the arguments since they were asked.
    pub edited: bool,
    /// What approving does, when the action says (without a final full
    /// stop: channels end the sentence themselves).
    pub on_approve: Option<String>,
    /// The stage that waits, if one does.
    pub stage: Option<StageBrief>,
}

/// The stage an approver is asked to decide.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageBrief {
    /// Its index (from 0).
    pub index: usize,
    /// How many stages the request has.
    pub of: usize,
    /// The policy (rule) that asks.
    pub policy: String,
    /// The policy's reason.
    pub reason: String,
    /// The condition that made this call ask, with the values it read
    /// (`input.amount >= 10000 (amount = 93,231)`).
    pub why: Option<String>,
    /// Who may decide.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub quorum: u32,
    /// Approvals so far.
    pub approvals: usize,
    /// Whether a decision needs a reason.
    pub require_reason: bool,
    /// When it stops accepting decisions.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Brief {
    /// The brief of `action` asked by `requester` with `inputs` (as
    /// stored), its `request` and the action's `display`.
    pub fn of(
        display: Option<&Display>,
        action: &str,
        requester: &str,
        inputs: &Json,
        request: Option<&ApprovalRequest>,
    ) -> Self {
        let will_run = request.map_or(inputs, |r| r.will_run(inputs)).value();
        let stage = request.and_then(|r| {
            let (index, s) = r.current_stage()?;
            Some(StageBrief {
                index,
                of: r.stages.len(),
                policy: s.spec.policy.clone(),
                reason: s.spec.reason.clone(),
                why: s.spec.trigger.as_ref().map(|t| {
                    let values: Vec<String> = t
                        .fields
                        .iter()
                        .filter_map(|f| {
                            let shown =
                                rows(None, &serde_json::json!({ f: lookup(&will_run, f)? }));
                            shown.into_iter().next().map(|(k, v)| format!("{k} = {v}"))
                        })
                        .collect();
                    let mut why = if t.unless {
                        format!("not auto-approved: `{}` does not hold", t.condition)
                    } else {
                        format!("`{}` holds", t.condition)
                    };
                    if !values.is_empty() {
                        why.push_str(&format!(" ({})", values.join(", ")));
                    }
                    why
                }),
                approvers: s.spec.approvers.clone(),
                quorum: s.spec.quorum.max(1),
                approvals: s.approvals(),
                require_reason: s.spec.require_reason,
                expires_at: s.expires_at,
            })
        });
        Self {
            title: display
                .and_then(|d| d.title(&will_run))
                .unwrap_or_else(|| action.to_owned()),
            action: action.to_owned(),
            requester: requester.to_owned(),
            rows: rows(display, &will_run),
            edited: request.is_some_and(|r| r.edited_inputs.is_some()),
            on_approve: display
                .and_then(|d| d.on_approve.as_deref())
                .map(|t| t.trim().trim_end_matches('.').to_owned()),
            stage,
        }
    }
}

impl StageBrief {
    /// "Stage 1 of 2 · Finance" (or just the rule, for a single stage).
    pub fn label(&self) -> String {
        if self.of > 1 {
            format!("Stage {} of {} · {}", self.index + 1, self.of, self.policy)
        } else {
            self.policy.clone()
        }
    }
}

impl Governor {
    /// The brief of `execution` as stored, with its action's display.
    pub fn brief(&self, execution: &Execution) -> Brief {
        let display = self.action_display(&execution.action);
        Brief::of(
            display.as_deref(),
            &execution.action,
            &execution.principal.id,
            &execution.inputs,
            execution.approval.as_ref(),
        )
    }
}
