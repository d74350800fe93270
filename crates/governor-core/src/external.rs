//! Actions whose body runs outside this process: an agent in another
//! language asks first ([`Action::admit`]), runs the action itself, and
//! reports the outcome ([`Governor::complete_external`]). Between the two
//! the execution is `Running` under a report deadline; an outcome that
//! never comes marks it failed once the deadline passes (by any resume
//! worker), so nothing stays running for ever.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::action::{Action, Call};
use crate::error::{GovernError, StoreError, StoreErrorKind};
use crate::execution::{Execution, ExecutionId, ExecutionStatus, Failure, Lease};
use crate::governor::Governor;
use crate::json::Json;
use crate::lifecycle::Run;
use crate::resume::ResumeError;

/// The lease owner of an execution an external runner is carrying out.
pub const EXTERNAL_RUNNER: &str = "external";

/// How long an external runner has to report when the action does not say
/// (see [`ActionBuilder::external`](crate::ActionBuilder::external)).
pub const DEFAULT_REPORT_WITHIN: Duration = Duration::from_secs(3600);

/// A call allowed to run elsewhere: run it with `arguments` and report by
/// `report_by`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admitted {
    /// The execution to report on.
    pub execution_id: ExecutionId,
    /// The arguments to run with: the ones asked for, or an approver's
    /// edits.
    pub arguments: Json,
    /// The report deadline; after it the execution is marked failed.
    pub report_by: DateTime<Utc>,
}

/// Why an outcome could not be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompleteError {
    /// No such execution.
    #[error("execution {execution_id} does not exist")]
    NotFound {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// The execution is not running under an external runner (not started,
    /// already reported, or failed after its deadline).
    #[error(
        "execution {execution_id} is {status}, not running externally; its outcome cannot be reported"
    )]
    NotRunning {
        /// The execution.
        execution_id: ExecutionId,
        /// Its status now.
        status: ExecutionStatus,
    },
    /// Its action is not registered here as external.
    #[error("action `{action}` is not registered here as an external action")]
    NotExternal {
        /// The action.
        action: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Action {
    /// Governs a call whose body runs elsewhere: the record, pre-actions,
    /// pre-execution policies and approval (waiting up to the policy's
    /// `wait`) happen here exactly as for [`run`](Self::run); when the
    /// call may go ahead the execution becomes `Running` with a report
    /// deadline and the caller gets [`Admitted`]. Pending approval is
    /// `Err(GovernError::Pending)`; once approved, the runner calls
    /// [`Governor::start_external`].
    pub async fn admit(&self, call: Call) -> Result<Admitted, GovernError> {
        let report_by = report_deadline(self);
        let lease = Lease {
            owner: EXTERNAL_RUNNER.to_owned(),
            until: report_by,
        };
        let mut run = self.open(call, Some(lease)).await?;
        run.hand_over();
        Ok(Admitted {
            execution_id: run.id(),
            arguments: Json::from(run.input()),
            report_by,
        })
    }
}

fn report_deadline(action: &Action) -> DateTime<Utc> {
    let within = action.external.unwrap_or(DEFAULT_REPORT_WITHIN);
    crate::store::lease_until(Utc::now(), within)
}

impl Governor {
    /// Starts an approved execution of an external action: checks that
    /// what runs is what was approved (and that changed policies still
    /// allow it), moves it to `Running` under a report deadline, and
    /// returns the arguments to run (an approver's edits, if any).
    pub async fn start_external(&self, id: ExecutionId) -> Result<Admitted, ResumeError> {
        self.start_external_by(id, None).await
    }

    /// [`start_external`](Self::start_external), recording who started it
    /// (`by`, a principal id) on the `execution.resumed` event: the
    /// requester, or someone allowed to run calls as others.
    pub async fn start_external_by(
        &self,
        id: ExecutionId,
        by: Option<&str>,
    ) -> Result<Admitted, ResumeError> {
        let execution = self.approved_execution(id).await?;
        let action = self
            .registered(&execution.action)
            .filter(|a| a.external.is_some())
            .ok_or_else(|| ResumeError::NotRegistered {
                action: execution.action.to_string(),
            })?;
        let runnable = self.runnable_arguments(&action, &execution).await?;
        let report_by = report_deadline(&action);
        let arguments = Json::from(&runnable.input);
        let mut run = Run::resumed(&action, self, execution, runnable.input, by);
        run.take_lease = Some(Lease {
            owner: EXTERNAL_RUNNER.to_owned(),
            until: report_by,
        });
        let started = async {
            run.recheck(&runnable.bound).await?;
            run.start(ExecutionStatus::Approved).await
        };
        if let Err(e) = started.await {
            if let Some(known) = crate::resume::resume_error(e, id) {
                return Err(known);
            }
            // Denied again by changed policies, or parked again: on the
            // record; the caller reads the execution.
            return Err(ResumeError::NotApproved {
                execution_id: id,
                status: self
                    .store()
                    .execution(id)
                    .await?
                    .map_or(ExecutionStatus::Failed, |e| e.status),
            });
        }
        run.hand_over();
        Ok(Admitted {
            execution_id: id,
            arguments,
            report_by,
        })
    }

    /// Records the outcome an external runner reports: the output (checked
    /// by post-execution policies, then post-actions run) or the error
    /// message. Returns the execution as stored afterwards, whatever its
    /// final status.
    pub async fn complete_external(
        &self,
        id: ExecutionId,
        outcome: Result<Value, String>,
    ) -> Result<Execution, CompleteError> {
        let Some(execution) = self.store().execution(id).await? else {
            return Err(CompleteError::NotFound { execution_id: id });
        };
        let external = execution
            .lease
            .as_ref()
            .is_some_and(|l| l.owner == EXTERNAL_RUNNER);
        if execution.status != ExecutionStatus::Running || !external {
            return Err(CompleteError::NotRunning {
                execution_id: id,
                status: execution.status,
            });
        }
        let action = self
            .registered(&execution.action)
            .filter(|a| a.external.is_some())
            .ok_or_else(|| CompleteError::NotExternal {
                action: execution.action.to_string(),
            })?;
        let input = execution.arguments_to_run().value();
        let mut run = Run::continuing(&action, self, execution, input, EXTERNAL_RUNNER);
        let recorded = match outcome {
            Ok(output) => run.finish(crate::json::Doc::from_value(output)).await,
            Err(message) => run.record_failure(Failure::new("action", message)).await,
        };
        match recorded {
            Err(GovernError::Store(e)) if e.kind() == StoreErrorKind::Conflict => {
                // The deadline passed and a worker failed it meanwhile.
                let status = self
                    .store()
                    .execution(id)
                    .await?
                    .map_or(ExecutionStatus::Failed, |e| e.status);
                return Err(CompleteError::NotRunning {
                    execution_id: id,
                    status,
                });
            }
            Err(GovernError::Store(e)) => return Err(CompleteError::Store(e)),
            // Post-execution denials and hook failures are on the record.
            Ok(()) | Err(_) => {}
        }
        self.store()
            .execution(id)
            .await?
            .ok_or(CompleteError::NotFound { execution_id: id })
    }

    /// Marks an external execution whose report deadline passed as failed
    /// (called by resume workers on runs they took over; `owner` holds
    /// the claim).
    pub(crate) async fn fail_unreported(
        &self,
        action: &Action,
        execution: Execution,
        owner: &str,
    ) -> Result<(), GovernError> {
        let input = execution.inputs.value();
        let mut run = Run::continuing(action, self, execution, input, owner);
        run.record_failure(Failure::new(
            "unreported",
            "the external runner reported no outcome before its deadline",
        ))
        .await
    }
}
