//! Resuming approved executions: the async pattern's second half.

use std::time::Duration;

use crate::action::Action;
use crate::error::{GovernError, StoreError, StoreErrorKind};
use crate::execution::{Execution, ExecutionId, ExecutionStatus};
use crate::governor::Governor;
use crate::redact::REDACTED;

/// Why an execution could not be resumed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// No such execution.
    #[error("execution {execution_id} does not exist")]
    NotFound {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// Only approved executions can be resumed.
    #[error("execution {execution_id} is {status}; only approved executions can be resumed")]
    NotApproved {
        /// The execution.
        execution_id: ExecutionId,
        /// Its status.
        status: ExecutionStatus,
    },
    /// No resumable action with this name is registered on this governor.
    #[error(
        "no resumable action `{action}` is registered here (a `#[govern]` function linked into this \
         program, or an action built with `.resumable(...)`)"
    )]
    NotRegistered {
        /// The action.
        action: String,
    },
    /// The stored arguments were redacted, so the action cannot run with
    /// them faithfully.
    #[error(
        "the stored arguments of execution {execution_id} contain redacted fields; resuming it needs the \
         original arguments, which are not kept"
    )]
    RedactedInputs {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// What would run (action, requester, arguments) is not what was
    /// approved: the stored execution changed after the decision. The
    /// execution was failed and the refusal audited.
    #[error(
        "execution {execution_id} is not what was approved (its action, requester or arguments \
         changed after the decision); it was failed instead of run"
    )]
    NotWhatWasApproved {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// The action is paused by the kill switch; the execution stays as it
    /// is until the pause is lifted.
    #[error("`{action}` is paused by `{by}`: {reason}")]
    Paused {
        /// The action.
        action: String,
        /// Who paused it.
        by: String,
        /// Why.
        reason: String,
    },
    /// Another runner took it first.
    #[error("execution {execution_id} is already being resumed elsewhere")]
    Conflict {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Governor {
    /// Runs an approved execution now, with its stored arguments, through
    /// the action registered under its name, and returns it as stored
    /// afterwards (`Completed`, or `Failed` with the reason). The original
    /// execution is the one that completes; the execution id is the
    /// idempotency key: of several concurrent resumes exactly one runs.
    pub async fn resume(&self, id: ExecutionId) -> Result<Execution, ResumeError> {
        let execution = self.approved_execution(id).await?;
        self.run_stored(execution, false).await
    }

    /// Runs `execution` from its stored (or edited) arguments: either an
    /// approved one, or (`taken_over`) a running one whose lease this
    /// governor just claimed from a runner that died.
    async fn run_stored(
        &self,
        execution: Execution,
        taken_over: bool,
    ) -> Result<Execution, ResumeError> {
        let id = execution.id;
        let action =
            self.registered(&execution.action)
                .ok_or_else(|| ResumeError::NotRegistered {
                    action: execution.action.to_string(),
                })?;
        let Some(handler) = action.resume.clone() else {
            return Err(ResumeError::NotRegistered {
                action: execution.action.to_string(),
            });
        };
        let runnable = self.runnable_arguments(&action, &execution).await?;
        // Post-execution denials and hook failures are recorded on the
        // execution, which is returned below.
        if let Err(e) =
            crate::lifecycle::run_resumed(self, &action, execution, runnable, &handler, taken_over)
                .await
            && let Some(e) = resume_error(e, id)
        {
            return Err(e);
        }
        self.store()
            .execution(id)
            .await?
            .ok_or(ResumeError::NotFound { execution_id: id })
    }

    /// Execution `id`, which must be `Approved`.
    pub(crate) async fn approved_execution(
        &self,
        id: ExecutionId,
    ) -> Result<Execution, ResumeError> {
        let Some(execution) = self.store().execution(id).await? else {
            return Err(ResumeError::NotFound { execution_id: id });
        };
        if execution.status != ExecutionStatus::Approved {
            return Err(ResumeError::NotApproved {
                execution_id: id,
                status: execution.status,
            });
        }
        Ok(execution)
    }

    /// The arguments `execution` may run with now (an approver's edits,
    /// else the stored inputs): not while its action is paused, nor when
    /// they were redacted on the way in.
    pub(crate) async fn runnable_arguments(
        &self,
        action: &Action,
        execution: &Execution,
    ) -> Result<Runnable, ResumeError> {
        if let Some(pause) = self.paused(&execution.action).await {
            return Err(ResumeError::Paused {
                action: execution.action.to_string(),
                by: pause.by,
                reason: pause.reason,
            });
        }
        let stored = execution.arguments_to_run();
        if !stored.as_str().contains(REDACTED) {
            return Ok(Runnable {
                input: stored.value(),
                bound: stored,
            });
        }
        let redacted = || ResumeError::RedactedInputs {
            execution_id: execution.id,
        };
        let sealed = execution
            .approval
            .as_ref()
            .and_then(|a| a.sealed_inputs.as_deref())
            .ok_or_else(redacted)?;
        let opened = self
            .seal_key()
            .and_then(|key| key.open(execution, sealed))
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .ok_or_else(redacted)?;
        // The sealed arguments must be the stored ones before redaction:
        // the digest the approval is bound to covers the stored form.
        let mut redactor = action.redactor.clone();
        redactor.absorb(self.redactor());
        if redactor.redact(&opened) != stored.value() {
            return Err(ResumeError::NotWhatWasApproved {
                execution_id: execution.id,
            });
        }
        Ok(Runnable {
            input: opened,
            bound: stored,
        })
    }

    /// Waits until execution `id` reaches a terminal status (or `timeout`
    /// passes) and returns it as stored then.
    pub async fn wait_for_result(
        &self,
        id: ExecutionId,
        timeout: Duration,
    ) -> Result<Execution, ResumeError> {
        self.wait_until(id, timeout, |s| s.is_terminal()).await
    }

    /// Waits until execution `id` is no longer awaiting approval (or
    /// `timeout` passes) and returns it as stored then.
    pub async fn wait_for_decision(
        &self,
        id: ExecutionId,
        timeout: Duration,
    ) -> Result<Execution, ResumeError> {
        self.wait_until(id, timeout, |s| s != ExecutionStatus::AwaitingApproval)
            .await
    }

    async fn wait_until(
        &self,
        id: ExecutionId,
        timeout: Duration,
        done: impl Fn(ExecutionStatus) -> bool,
    ) -> Result<Execution, ResumeError> {
        let mut changes = self.store().watch();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(e) = self.store().execution(id).await? else {
                return Err(ResumeError::NotFound { execution_id: id });
            };
            if done(e.status) || tokio::time::Instant::now() >= deadline {
                return Ok(e);
            }
            crate::store::next_change(&mut changes, id, deadline).await;
        }
    }
}

/// Approved executions a worker claims (and runs concurrently) per round.
const WORKER_BATCH: usize = 32;

impl Governor {
    /// One round of a resume worker: takes over abandoned runs (see
    /// [`take_over_abandoned`](Self::take_over_abandoned)), then claims up
    /// to `limit` approved executions for `owner` and resumes those whose
    /// action is registered here (others are released for instances that
    /// have it). Returns how many it completed or failed.
    pub async fn resume_approved(&self, owner: &str, limit: usize) -> Result<usize, StoreError> {
        let mut finished = self.take_over_abandoned(limit).await?;
        let runnable = self.runnable_actions();
        if runnable.is_empty() {
            return Ok(finished);
        }
        let names: Vec<&str> = runnable.iter().map(String::as_str).collect();
        let claimed = self
            .store()
            .claim(
                ExecutionStatus::Approved,
                owner,
                self.resume_lease(),
                limit,
                Some(&names),
            )
            .await?;
        // The claimed runs go concurrently (they are independent
        // executions), so their writes share the store's commits instead of
        // waiting for one another's.
        let mut running = tokio::task::JoinSet::new();
        for e in claimed {
            // Not runnable here (yet): left for an instance that has the
            // action, or for after the pause is lifted.
            if self.registered(&e.action).is_none() || self.paused(&e.action).await.is_some() {
                let _ = self.store().release_lease(e.id, owner).await;
                continue;
            }
            let governor = self.clone();
            running.spawn(async move { (e.id, governor.resume(e.id).await) });
        }
        let mut failure = None;
        while let Some(done) = running.join_next().await {
            match done {
                Ok((_, Ok(_))) => finished += 1,
                Ok((_, Err(ResumeError::Store(err)))) => failure = Some(err),
                Ok((id, Err(err))) => {
                    tracing::warn!(execution_id = %id, "resume worker `{owner}`: {err}")
                }
                Err(join) => tracing::error!("resume worker `{owner}`: a run panicked: {join}"),
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(finished),
        }
    }

    /// Takes over runs whose runner died (its lease lapsed) and runs them
    /// again from their stored arguments. The execution id is the action's
    /// idempotency key: it may run more than once after a crash, but only
    /// one completion is recorded (a late one from the old runner is
    /// refused because it no longer holds the lease).
    pub async fn take_over_abandoned(&self, limit: usize) -> Result<usize, StoreError> {
        // Only runs this instance can finish: others would starve its own
        // behind them, round after round.
        let runnable = self.runnable_actions();
        if runnable.is_empty() {
            return Ok(0);
        }
        let names: Vec<&str> = runnable.iter().map(String::as_str).collect();
        let taken = self
            .store()
            .claim_abandoned(self.instance(), self.resume_lease(), limit, Some(&names))
            .await?;
        let mut finished = 0;
        let mut running = tokio::task::JoinSet::new();
        for e in taken {
            let id = e.id;
            if self.registered(&e.action).is_none() {
                // Left for an instance that has the action: the lease is
                // cut to now, so it stays lapsed (a released lease would
                // make the run look like one its caller runs in place).
                let _ = self
                    .store()
                    .renew_lease(id, self.instance(), Duration::ZERO)
                    .await;
                continue;
            }
            if self.paused(&e.action).await.is_some() {
                // The claim lapses and the run is taken over after the lift.
                continue;
            }
            if let Some(action) = self.registered(&e.action).filter(|a| a.external.is_some()) {
                // An external runner missed its report deadline.
                match self.fail_unreported(&action, e, self.instance()).await {
                    Ok(()) => finished += 1,
                    Err(GovernError::Store(err)) => return Err(err),
                    Err(err) => {
                        tracing::warn!(execution_id = %id, "failing an unreported run: {err}")
                    }
                }
                continue;
            }
            // Together, not one after another: they were claimed with one
            // lease, which would lapse under the last ones while the first
            // ran (and a lapsed lease refuses the completion, so the run
            // would be taken over and run yet again).
            let governor = self.clone();
            running.spawn(async move { (id, governor.run_stored(e, true).await) });
        }
        let mut failure = None;
        while let Some(done) = running.join_next().await {
            match done {
                Ok((_, Ok(_))) => finished += 1,
                Ok((_, Err(ResumeError::Store(err)))) => failure = Some(err),
                Ok((id, Err(err))) => {
                    tracing::warn!(execution_id = %id, "taking over an abandoned run: {err}")
                }
                Err(join) => tracing::error!("taking over an abandoned run: it panicked: {join}"),
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(finished),
        }
    }

    /// Resumes approved executions in the background (the seed's
    /// AutoResumeManager): every `every`, one [`resume_approved`] round.
    /// Workers on several instances share the work; each execution runs
    /// once. Abort the returned task to stop at once (runs in flight are
    /// cut off and taken over after their lease), or use
    /// [`spawn_resume_worker_until`](Self::spawn_resume_worker_until) to
    /// stop gracefully.
    ///
    /// [`resume_approved`]: Self::resume_approved
    pub fn spawn_resume_worker(
        &self,
        owner: impl Into<String>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_resume_worker_until(owner, every, std::future::pending())
    }

    /// [`spawn_resume_worker`](Self::spawn_resume_worker) that stops when
    /// `stop` completes: it claims nothing more, lets the runs of its
    /// current round finish (so it holds no lease when the task ends),
    /// and returns. Await the task for a graceful shutdown.
    pub fn spawn_resume_worker_until(
        &self,
        owner: impl Into<String>,
        every: Duration,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let governor = self.clone();
        let owner = owner.into();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    biased;
                    () = &mut stop => return,
                    _ = tick.tick() => {}
                }
                // A full round means more may be waiting: go on at once
                // (but check for a stop between rounds).
                loop {
                    match governor.resume_approved(&owner, WORKER_BATCH).await {
                        Ok(n) if n >= WORKER_BATCH => {}
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!("resume worker `{owner}` failed: {e}");
                            break;
                        }
                    }
                    if is_done(&mut stop) {
                        return;
                    }
                }
            }
        })
    }
}

/// Whether `f` is already complete (polled once, without waiting).
fn is_done<F: std::future::Future<Output = ()>>(f: &mut std::pin::Pin<&mut F>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    f.as_mut().poll(&mut cx).is_ready()
}

/// The arguments an approved execution runs with.
pub(crate) struct Runnable {
    /// The stored form the approval is bound to (checked before running).
    pub(crate) bound: crate::json::Json,
    /// What the action receives: the stored form, or the sealed original
    /// when sensitive fields were redacted from it.
    pub(crate) input: serde_json::Value,
}

/// The resume error a failed approved run means for its caller, if any:
/// a binding mismatch, a lost race, or a store failure. Other failures
/// (denials after running, hook errors) are on the execution's record.
pub(crate) fn resume_error(e: GovernError, id: ExecutionId) -> Option<ResumeError> {
    match e {
        GovernError::Denied { policy, .. } if policy == crate::lifecycle::BINDING_POLICY => {
            Some(ResumeError::NotWhatWasApproved { execution_id: id })
        }
        GovernError::Store(e) if e.kind() == StoreErrorKind::Conflict => {
            Some(ResumeError::Conflict { execution_id: id })
        }
        GovernError::Store(e) => Some(ResumeError::Store(e)),
        _ => None,
    }
}
