//! The life of one governed call: record, pre-actions, pre-execution
//! policies, approval, snapshot, run, snapshot, post-execution policies,
//! post-actions, complete.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::action::{Action, Call, HookContext};
use crate::approval::{ApprovalRequest, ApprovalSpec};
use crate::audit::{AuditRecord, DecisionRecord};
use crate::binding::Check;
use crate::decisions::Decisions;
use crate::error::GovernError;
use crate::event::{Event, EventKind, EventRecord};
use crate::execution::{
    Checkpoint, Execution, ExecutionId, ExecutionStatus, Failure, Snapshot, StatusSet,
};
use crate::governor::Governor;
use crate::json::{Doc, Json};
use crate::outbox::NotificationKind;
use crate::pause::{Pause, PauseMode};
use crate::policy::{Decision, Denial, Policy, PolicyContext, PolicyKind, PolicyPhase};
use crate::principal::Principal;
use crate::redact::Redactor;
use crate::store::{Creation, Store, Transition, put_back, take_some};

impl Action {
    /// Runs `f` governed. `#[govern]` expands to this; `output` turns the
    /// result into JSON text (`None` when it cannot be recorded) and
    /// `error` turns the action's error into its stored message.
    pub async fn run_with<T, E, F, Fut, O, R>(
        &self,
        call: Call,
        f: F,
        output: O,
        error: R,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<GovernError>,
        O: FnOnce(&T) -> Option<Result<Json, String>>,
        R: FnOnce(&E) -> String,
    {
        let span = tracing::info_span!(
            "governed_call",
            action = &*self.name,
            execution_id = tracing::field::Empty
        );
        async move {
            let mut run = self.open(call, None).await?;
            match f().await {
                Ok(value) => {
                    let output = match output(&value) {
                        Some(Ok(v)) => v,
                        Some(Err(reason)) => {
                            return Err(Box::pin(run.unrecordable_output(reason)).await.into());
                        }
                        None => Json::null(),
                    };
                    run.finish(Doc::from_text(output)).await?;
                    Ok(value)
                }
                Err(err) => {
                    Box::pin(run.action_failed(error(&err))).await;
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Everything before the body runs: the record, pre-actions,
    /// pre-execution policies, the approval wait and the move to `Running`
    /// (under `lease` when given). Returns the run in flight.
    pub(crate) async fn open(
        &self,
        call: Call,
        lease: Option<crate::execution::Lease>,
    ) -> Result<Run<'_>, GovernError> {
        let mut run = Run::begin(self, call)?;
        if !self.pre.is_empty() {
            // Pre-actions are user code with possible side effects: the
            // execution must be on record before they run. Without them,
            // the first write waits until the pre-execution policies (pure
            // checks) have decided, saving a write per call.
            Box::pin(run.create_now()).await?;
        }
        tracing::Span::current().record("execution_id", tracing::field::display(run.id()));
        let paused = run.deny_if_paused().await?;
        if !self.pre.is_empty() {
            Box::pin(run.pre_actions()).await?;
        }
        // Without policies to run, the call does not build their futures.
        let gate = if self.phase_policies.pre == 0 {
            Gate::Proceed
        } else {
            run.pre_policies().await?
        };
        let from = match gate {
            Gate::Proceed => ExecutionStatus::Pending,
            Gate::Parked { wait } => {
                Box::pin(run.wait_and_recheck(wait)).await?;
                ExecutionStatus::Approved
            }
        };
        // A call that went straight through has the same time and view
        // of the pauses as the first check: no need to look again.
        if paused || !run.straight_through(from) {
            run.hold_if_paused(from).await?;
        }
        run.take_lease = lease;
        match run.start(from).await {
            Ok(()) => Ok(run),
            // Approved, but started elsewhere first (a manual resume):
            // the result will be on the record under this id.
            Err(GovernError::Store(e))
                if from == ExecutionStatus::Approved
                    && e.kind() == crate::StoreErrorKind::Conflict =>
            {
                Err(GovernError::Pending {
                    execution_id: run.id(),
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// The state of one call in flight. Dropping it before it reached a
/// resting state (the caller's future was cancelled) marks the execution
/// cancelled.
pub(crate) struct Run<'a> {
    action: &'a Action,
    /// Borrowed, like the action: cloning it, its store and its event bus
    /// for every call cost six atomic operations.
    governor: &'a Governor,
    /// The action's parts every call clones, as copied for the thread the
    /// run began on (looked up once: each look-up reads a thread-local).
    hot: &'a crate::action::Hot,
    /// The action's sensitive fields with the governor's.
    redactor: Cow<'a, Redactor>,
    capture_state: bool,
    /// The execution as stored, with the slots of its first write: boxed
    /// once, so the first write needs no copy of it and moving the run
    /// stays cheap.
    record: Box<Creation>,
    /// The arguments as given (not redacted).
    input: Doc,
    output: Option<Doc>,
    decisions: Decisions,
    /// A lease the `Running` transition takes (resumed runs).
    pub(crate) take_lease: Option<crate::execution::Lease>,
    /// The lease owner later transitions must hold (resumed runs).
    lease_owner: Option<String>,
    /// Pre-execution policies that allowed the call (to give quota back).
    allowed: Allowed,
    /// The time of the current lifecycle step (one clock read per step).
    now: DateTime<Utc>,
    /// `now` in microseconds since the epoch, for event ids, the pause
    /// cache and the duration.
    now_us: i64,
    /// When the execution was created, in microseconds since the epoch.
    created_us: i64,
    /// Events waiting to be stored with the next transition, then published.
    queued: Vec<EventRecord>,
    /// The last step's change, kept for the next one: a fresh one would
    /// be built on the stack and copied into a new box every step.
    spare: Option<Box<Transition>>,
    /// Where the ids of this run's events come from.
    stamps: RunStamps,
    /// Set once the execution reached a terminal or parked status.
    settled: bool,
    /// Whether the execution has been written to the store yet.
    created: bool,
}

impl<'a> Run<'a> {
    fn begin(action: &'a Action, call: Call) -> Result<Run<'a>, GovernError> {
        let governor = action.governor();
        let principal = call
            .principal
            .or_else(Principal::current)
            .unwrap_or_else(anonymous);
        let input = call
            .args
            .into_doc()
            .map_err(|e| with_action(e, &action.name))?;
        let redactor = action.redactor.merged(governor.redactor());
        let stored_input = redact_doc(&redactor, &input);
        let now = crate::ids::read();
        // The id and the stamps of the first write's events on a straight
        // path (started, one decision per pre-execution policy, the
        // snapshot), from one atomic operation: nobody else can write
        // this execution's events before that write.
        let first_write =
            1 + action.phase_policies.pre + usize::from(action.captures_state(governor));
        // A new execution: nobody else writes its events before this run
        // does, so its stamps need not look at other threads'.
        let mut stamps = crate::ids::Stamps::reserve_after(now.unix_ms(), 1 + first_write, 0);
        // Built in its box: built on the stack and moved in, the record
        // was copied twice (a kilobyte).
        let record = Box::new(Creation::new(Execution::with_id(
            ExecutionId::from_uuid(stamps.next_id()),
            now.at,
            Arc::clone(&action.hot().name),
            principal,
            stored_input.clone(),
        )));
        let mut run = Run::new(action, governor, redactor, record, input, now);
        run.stamps = RunStamps {
            reserved: Some(stamps),
            own_after: Some(0),
        };
        let started = run.event(EventKind::ExecutionStarted, stored_input);
        run.queue(started);
        Ok(run)
    }

    /// Writes the execution with the events queued so far.
    async fn create_now(&mut self) -> Result<(), GovernError> {
        self.record.events = std::mem::take(&mut self.queued);
        let ms = self.reading().unix_ms();
        stamp(&mut self.stamps, ms, &mut self.record.events);
        let copies = self.copies_to_publish(&self.record.events);
        let written = crate::store::create(self.store(), &mut self.record).await;
        self.record.events.clear();
        written?;
        self.created = true;
        self.publish(copies);
        Ok(())
    }

    /// The events of a write as published, made before the write when
    /// anyone observes events: an in-place write may take the records.
    fn copies_to_publish(&self, events: &[EventRecord]) -> Option<Vec<Event>> {
        let execution = &self.record.execution;
        let event = |e: &EventRecord| {
            e.clone()
                .into_event(execution.id, Arc::clone(&execution.action))
        };
        (!events.is_empty() && self.governor.events().is_observed())
            .then(|| events.iter().map(event).collect())
    }

    /// Publishes a stored write's events (the copies made before it).
    fn publish(&self, copies: Option<Vec<Event>>) {
        let bus = self.governor.events();
        copies.into_iter().flatten().for_each(|e| bus.emit(e));
    }

    fn new(
        action: &'a Action,
        governor: &'a Governor,
        redactor: Cow<'a, Redactor>,
        record: Box<Creation>,
        input: Doc,
        now: crate::ids::Reading,
    ) -> Run<'a> {
        // The last finished run's step box and event list, if this thread
        // has one: a call then allocates neither.
        let mut spare = SPARE_STEP.take();
        let queued = match &mut spare {
            Some(t) if t.events.capacity() > 0 => std::mem::take(&mut t.events),
            // Started, state captured and one decision per policy, before
            // the first write.
            _ => Vec::with_capacity(4 + action.policies.len()),
        };
        Run {
            action,
            governor,
            hot: action.hot(),
            redactor,
            capture_state: action.captures_state(governor),
            record,
            input,
            output: None,
            decisions: Decisions::new(),
            queued,
            allowed: Allowed::new(),
            take_lease: None,
            lease_owner: None,
            now: now.at,
            now_us: now.unix_us,
            created_us: now.unix_us,
            spare,
            created: false,
            stamps: RunStamps::default(),
            settled: false,
        }
    }

    /// A run picking up an approved execution from the store; `by` is who
    /// resumed it, when someone did (an external runner), recorded on the
    /// `execution.resumed` event.
    pub(crate) fn resumed(
        action: &'a Action,
        governor: &'a Governor,
        execution: Execution,
        input: Value,
        by: Option<&str>,
    ) -> Run<'a> {
        let mut run = Run::stored(action, governor, execution, input);
        let restored = run.event(
            EventKind::StateRestored,
            checkpoint_data(Checkpoint::AwaitingApproval),
        );
        let data = by.map_or_else(Json::null, |by| {
            Json::from(&serde_json::json!({ "by": by }))
        });
        let resumed = run.event(EventKind::ExecutionResumed, data);
        run.queue(restored);
        run.queue(resumed);
        run
    }

    /// A run picking up an execution that is already `Running` under
    /// `owner`'s lease, to record its outcome.
    pub(crate) fn continuing(
        action: &'a Action,
        governor: &'a Governor,
        execution: Execution,
        input: Value,
        owner: &str,
    ) -> Run<'a> {
        let mut run = Run::stored(action, governor, execution, input);
        run.lease_owner = Some(owner.to_owned());
        run
    }

    /// A run over an execution already in the store.
    fn stored(
        action: &'a Action,
        governor: &'a Governor,
        execution: Execution,
        input: Value,
    ) -> Run<'a> {
        let redactor = action.redactor.merged(governor.redactor());
        let mut run = Run::new(
            action,
            governor,
            redactor,
            Box::new(Creation::new(execution)),
            Doc::from_value(input),
            crate::ids::read(),
        );
        run.created_us = run.record.execution.created_at.timestamp_micros();
        run.created = true;
        run
    }

    /// The body runs elsewhere from here on: dropping this run must not
    /// mark the execution cancelled.
    pub(crate) fn hand_over(&mut self) {
        self.settled = true;
    }

    /// The arguments as given (not redacted).
    pub(crate) fn input(&self) -> &Value {
        self.input.value()
    }

    /// Records that the action failed with `failure`.
    pub(crate) async fn record_failure(&mut self, failure: Failure) -> Result<(), GovernError> {
        self.settle_failed(ExecutionStatus::Failed, failure, EventKind::ExecutionFailed)
            .await
    }

    /// Called through the `dyn Store` itself: through the `Arc`, the call
    /// would take the forwarding impl for `Arc<S>` and box its future
    /// twice.
    fn store(&self) -> &'a dyn Store {
        &**self.governor.store()
    }

    pub(crate) fn id(&self) -> ExecutionId {
        self.record.execution.id
    }

    /// Leaves this run's step box, emptied, and its argument map for the
    /// thread's next run.
    fn keep_spare_step(&mut self) {
        if let Some(value) = self.input.take_value() {
            crate::action::recycle_args(self.action, value);
        }
        let Some(mut t) = self.spare.take() else {
            return;
        };
        t.clear();
        if t.events.capacity() == 0 && self.queued.is_empty() {
            std::mem::swap(&mut t.events, &mut self.queued);
        }
        SPARE_STEP.set(Some(t));
    }

    fn reading(&self) -> crate::ids::Reading {
        crate::ids::Reading {
            at: self.now,
            unix_us: self.now_us,
        }
    }

    /// Reads the clock for the next lifecycle step.
    fn tick(&mut self) {
        let now = crate::ids::read();
        self.now = now.at;
        self.now_us = now.unix_us;
    }

    /// An event of this run, given its id when it is written ([`stamp`]).
    fn event(&self, kind: EventKind, data: Json) -> EventRecord {
        EventRecord::unstamped(self.now, kind, data)
    }

    fn hook_context(&self) -> HookContext {
        HookContext {
            execution_id: self.record.execution.id,
            action: Arc::clone(&self.record.execution.action),
            input: Arc::clone(self.input.value()),
            output: self.output.as_ref().map(|o| Arc::clone(o.value())),
            principal: Arc::clone(&self.record.execution.principal),
        }
    }

    fn policy_context(&self, phase: PolicyPhase) -> PolicyContext<'_> {
        PolicyContext {
            execution_id: self.record.execution.id,
            action: &self.record.execution.action,
            phase,
            input: self.input.value(),
            output: self
                .output
                .as_ref()
                .filter(|_| self.action.policies_read_output)
                .map(|o| &**o.value()),
            principal: &self.record.execution.principal,
        }
    }

    /// Queues an event; it is stored with the next transition and
    /// published once stored.
    fn queue(&mut self, event: EventRecord) {
        self.queued.push(event);
    }

    /// A change of this execution from `from` to `to`, now. Boxed, like
    /// everything a lifecycle step holds across the store write: every
    /// move of a future copies all of it, so the hot futures stay small.
    fn transition(&mut self, from: impl Into<StatusSet>, to: ExecutionStatus) -> Box<Transition> {
        let (at, id, from) = (self.now, self.id(), from.into());
        match self.spare.take() {
            Some(mut t) => {
                t.reset(at, id, from, to);
                t
            }
            None => Box::new(Transition::at(at, id, from, to)),
        }
    }

    async fn apply(&mut self, mut t: Box<Transition>) -> Result<(), GovernError> {
        if t.lease_owner.is_none() {
            t.lease_owner = self.lease_owner.clone();
        }
        if !self.queued.is_empty() {
            let mut events = std::mem::take(&mut self.queued);
            events.append(&mut t.events);
            t.events = events;
        }
        let ms = self.reading().unix_ms();
        stamp(&mut self.stamps, ms, &mut t.events);
        let copies = self.copies_to_publish(&t.events);
        if self.created {
            if let Err(e) = crate::store::transition(self.store(), &mut t).await {
                self.keep_decisions(t.audit.take());
                return Err(e.into());
            }
            t.apply_to(&mut self.record.execution);
        } else {
            // The first write: the execution as this step leaves it. A
            // failed write ends the call, so the record is not rolled back.
            let record = &mut *self.record;
            t.apply_to(&mut record.execution);
            record.events = std::mem::take(&mut t.events);
            put_back(&mut record.snapshot, take_some(&mut t.snapshot));
            put_back(&mut record.audit, take_some(&mut t.audit));
            if !t.notifications.is_empty() {
                record.notifications = std::mem::take(&mut t.notifications);
            }
            let written = crate::store::create(self.store(), &mut self.record).await;
            t.events = std::mem::take(&mut self.record.events);
            self.record.notifications.clear();
            self.record.snapshot = None;
            let audit = take_some(&mut self.record.audit);
            if let Err(e) = written {
                self.keep_decisions(audit);
                return Err(e.into());
            }
            self.created = true;
        }
        if t.to.is_terminal() || t.to == ExecutionStatus::AwaitingApproval {
            self.settled = true;
        }
        // The store took the records or left them; nobody needs them now.
        t.events.clear();
        self.publish(copies);
        // Keep the allocation for the next step's events.
        if self.queued.capacity() == 0 {
            std::mem::swap(&mut self.queued, &mut t.events);
        }
        self.spare = Some(t);
        Ok(())
    }

    /// The audit record of the call's last step: it takes the decisions
    /// instead of copying them ([`Self::keep_decisions`] puts them back
    /// if the step is not recorded).
    fn closing_audit_record(
        &mut self,
        status: ExecutionStatus,
        failure: Option<&Failure>,
        stored_output: Option<&Json>,
    ) -> AuditRecord {
        let decisions = self.decisions.take_record(&self.hot.allowed_decisions);
        self.audit_record_with(status, failure, decisions, stored_output)
    }

    /// After a failed write: the decisions a closing audit record took
    /// stay with the run, for the record a later step (a cancellation)
    /// writes.
    fn keep_decisions(&mut self, unwritten: Option<AuditRecord>) {
        if let Some(record) = unwritten
            && self.decisions.is_empty()
        {
            self.decisions = Decisions::Listed(record.decisions.to_vec());
        }
    }

    fn audit_record(&self, status: ExecutionStatus, failure: Option<&Failure>) -> AuditRecord {
        let decisions = self.decisions.to_record(&self.hot.allowed_decisions);
        self.audit_record_with(status, failure, decisions, None)
    }

    /// `stored_output`: the output as redacted for the record, when the
    /// caller has it already.
    fn audit_record_with(
        &self,
        status: ExecutionStatus,
        failure: Option<&Failure>,
        decisions: Arc<[DecisionRecord]>,
        stored_output: Option<&Json>,
    ) -> AuditRecord {
        let settings = self.action.audit.as_ref();
        AuditRecord {
            execution_id: self.record.execution.id,
            action: Arc::clone(&self.record.execution.action),
            principal: shared_id(&self.record.execution.principal),
            tenant: self.record.execution.principal.tenant.clone(),
            status,
            at: self.now,
            decisions,
            inputs: settings
                .filter(|s| s.log_inputs)
                .map(|_| self.record.execution.inputs.clone()),
            output: settings
                .filter(|s| s.log_outputs)
                .and_then(|_| match stored_output {
                    Some(o) => Some(o.clone()),
                    None => self.output.as_ref().map(|o| redact_doc(&self.redactor, o)),
                }),
            failure: failure.map(|f| f.message.clone()),
            tags: Arc::clone(&self.hot.audit_tags),
            approved_digest: None,
        }
    }

    /// Ends the call in a terminal status with a failure.
    async fn settle_failed(
        &mut self,
        to: ExecutionStatus,
        failure: Failure,
        kind: EventKind,
    ) -> Result<(), GovernError> {
        self.tick();
        let mut failure = failure;
        failure.message = self.redactor.redact_text(&failure.message);
        let mut t = self.transition(StatusSet::active(), to);
        t.events.push(self.event(
            kind,
            json_of(
                &json!({"kind": failure.kind, "error": failure.message, "policy": failure.policy}),
            ),
        ));
        t.audit = Some(self.closing_audit_record(to, Some(&failure), None));
        t.failure = Some(failure);
        self.apply(t).await
    }

    async fn pre_actions(&mut self) -> Result<(), GovernError> {
        let action = self.action;
        for hook in &action.pre {
            self.run_hook(
                hook,
                "pre-action",
                EventKind::PreActionStarted,
                EventKind::PreActionCompleted,
                EventKind::PreActionFailed,
            )
            .await?;
        }
        Ok(())
    }

    async fn post_actions(&mut self) -> Result<(), GovernError> {
        let action = self.action;
        for hook in &action.post {
            self.run_hook(
                hook,
                "post-action",
                EventKind::PostActionStarted,
                EventKind::PostActionCompleted,
                EventKind::PostActionFailed,
            )
            .await?;
        }
        Ok(())
    }

    async fn run_hook(
        &mut self,
        hook: &crate::action::Hook,
        stage: &'static str,
        started: EventKind,
        completed: EventKind,
        failed: EventKind,
    ) -> Result<(), GovernError> {
        self.tick();
        let data = json_of(&json!({"hook": hook.name()}));
        self.queue(self.event(started, data.clone()));
        let outcome = hook.call(self.hook_context()).await;
        self.tick();
        match outcome {
            Ok(()) => {
                self.queue(self.event(completed, data));
                Ok(())
            }
            Err(reason) => {
                let reason = self.redactor.redact_text(&reason);
                self.queue(self.event(
                    failed,
                    json_of(&json!({"hook": hook.name(), "error": reason})),
                ));
                let failure = Failure::new(
                    "hook",
                    format!("{stage} `{}` failed: {reason}", hook.name()),
                );
                self.settle_failed(ExecutionStatus::Failed, failure, EventKind::ExecutionFailed)
                    .await?;
                Err(GovernError::Hook {
                    execution_id: self.id(),
                    action: self.record.execution.action.to_string(),
                    stage,
                    hook: hook.name().to_owned(),
                    reason,
                })
            }
        }
    }

    /// Evaluates the policies of `phase`; returns the first enforced denial
    /// (with its policy) and the approvals asked for.
    async fn evaluate(
        &mut self,
        phase: PolicyPhase,
    ) -> (
        Option<(Arc<dyn Policy>, Denial)>,
        Vec<ApprovalSpec>,
        Allowed,
    ) {
        let action = self.action;
        if action.phase_policies.get(phase) == 0 {
            return (None, Vec::new(), Allowed::new());
        }
        let mut approvals = Vec::new();
        let mut allowed = Allowed::new();
        for (i, policy) in action.policies.iter().enumerate() {
            if !policy.phase().applies_to(phase) {
                continue;
            }
            let ctx = self.policy_context(phase);
            // A policy that answers at once decides at the step's time (a
            // clock reading costs more than such a policy); one that waited
            // decides when it answers.
            let mut decision = match (**policy).evaluate_now(&ctx) {
                Some(decision) => decision,
                None => {
                    let decision = (**policy).evaluate(&ctx).await;
                    self.tick();
                    decision
                }
            };
            let shadow = policy.is_shadow();
            let mut granted = None;
            if let (Decision::RequireApproval(spec), false) = (&decision, shadow)
                && let Some(grant) = Box::pin(self.standing_grant(&spec.policy)).await
            {
                granted = Some(format!(
                    "approved by standing grant {} from `{}` until {}",
                    grant.id, grant.granted_by, grant.until
                ));
                decision = Decision::Allow;
            }
            let outcome = if granted.is_some() {
                "granted"
            } else {
                decision.outcome()
            };
            let reason =
                granted.or_else(|| decision.reason().map(|r| self.redactor.redact_text(r)));
            // The common case: an allow's event data and decision record
            // are the same for every call, so they were built with the
            // action.
            let cached = match (&decision, self.hot.allow_data.get(i)) {
                (Decision::Allow, Some(cached)) if outcome == "allow" => Some(cached),
                _ => None,
            };
            let data = match cached {
                Some(cached) => cached.for_phase(phase),
                None => decision_data(&**policy, phase, outcome, reason.as_deref()),
            };
            // A decision that is not plain allows (or parks) is announced
            // twice; only then is its data shared.
            let follow = match (&decision, shadow) {
                (Decision::Allow, _) | (Decision::RequireApproval(_), false) => None,
                (Decision::Warn(_), _) | (_, true) => Some(EventKind::PolicyFailed),
                (Decision::Deny(_), false) => Some(EventKind::PolicyViolated),
            };
            match follow {
                Some(kind) => {
                    self.queue(self.event(EventKind::PolicyEvaluated, data.clone()));
                    self.queue(self.event(kind, data));
                }
                None => self.queue(self.event(EventKind::PolicyEvaluated, data)),
            }
            let name = action.policy_names.get(i);
            let counted = match (cached, name, &reason) {
                (Some(_), Some(name), None) => {
                    self.decisions
                        .allowed(name, shadow, &self.hot.allowed_decisions)
                }
                _ => false,
            };
            if !counted {
                let record = DecisionRecord {
                    policy: name.cloned().unwrap_or_else(|| Arc::from(policy.name())),
                    outcome: std::borrow::Cow::Borrowed(outcome),
                    reason,
                    shadow,
                };
                self.decisions.push(record, &self.hot.allowed_decisions);
            }
            match decision {
                Decision::Allow => allowed.push(policy_index(i)),
                Decision::Warn(_) => {}
                Decision::Deny(_) | Decision::RequireApproval(_) if shadow => {
                    allowed.push(policy_index(i));
                }
                Decision::Deny(denial) => {
                    return (Some((Arc::clone(policy), denial)), approvals, allowed);
                }
                Decision::RequireApproval(spec) => approvals.push(spec),
            }
        }
        (None, approvals, allowed)
    }

    /// Evaluates the pre-execution policies; a denial ends the call.
    /// Returns the approvals asked for.
    async fn pre_checks(&mut self) -> Result<Vec<ApprovalSpec>, GovernError> {
        let (denied, approvals, allowed) = self.evaluate(PolicyPhase::PreExecution).await;
        self.allowed = allowed;
        if let Some((policy, denial)) = denied {
            // Quota-like state is given back: the call never happened.
            self.release_allowed();
            let error = self.denial_error(&*policy, denial, PolicyPhase::PreExecution);
            let failure = failure_of(&error, policy.name());
            Box::pin(self.settle_failed(
                ExecutionStatus::Denied,
                failure,
                EventKind::ExecutionDenied,
            ))
            .await?;
            return Err(error);
        }
        Ok(approvals)
    }

    async fn pre_policies(&mut self) -> Result<Gate, GovernError> {
        let approvals = self.pre_checks().await?;
        if approvals.is_empty() {
            return Ok(Gate::Proceed);
        }
        let wait = approvals.iter().map(|a| a.wait).max().unwrap_or_default();
        if let Err(e) = Box::pin(self.park(approvals, wait, ExecutionStatus::Pending)).await {
            self.release_unrecorded();
            return Err(e);
        }
        Ok(Gate::Parked { wait })
    }

    /// Waits for the decision on a parked call, then checks that what
    /// runs is what was approved.
    async fn wait_and_recheck(&mut self, wait: std::time::Duration) -> Result<(), GovernError> {
        self.await_decision(wait).await?;
        let inputs = self.record.execution.inputs.clone();
        self.recheck(&inputs).await
    }

    /// The sync pattern: waits up to `wait` for a human decision on the
    /// parked execution, made anywhere. Returns when it is approved; a
    /// rejection or expiry ends the call with its reason; when `wait` runs
    /// out the caller gets `Pending` and the execution stays parked.
    async fn await_decision(&mut self, wait: std::time::Duration) -> Result<(), GovernError> {
        let id = self.id();
        let pending = GovernError::Pending { execution_id: id };
        // Parked: from here on, deciders write this execution's events too.
        self.stamps = RunStamps::default();
        if wait.is_zero() {
            return Err(pending);
        }
        // Subscribe before reading, so a decision made between the two is
        // seen by the read or announced on the subscription, never lost.
        let mut changes = self.store().watch();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Some(current) = self.store().execution(id).await? else {
                return Err(pending);
            };
            match current.status {
                ExecutionStatus::AwaitingApproval => {}
                // Approved with changed arguments: the closure this caller
                // holds has the old ones, so the execution continues through
                // `resume` (a worker or the caller's own code) instead.
                ExecutionStatus::Approved
                    if current
                        .approval
                        .as_ref()
                        .is_some_and(|a| a.edited_inputs.is_some()) =>
                {
                    return Err(pending);
                }
                ExecutionStatus::Approved => {
                    self.record.execution = current;
                    return Ok(());
                }
                ExecutionStatus::Rejected | ExecutionStatus::Expired => {
                    let failure = current
                        .failure
                        .unwrap_or_else(|| Failure::new("rejected", "rejected"));
                    return Err(GovernError::Rejected {
                        execution_id: id,
                        policy: failure.policy.unwrap_or_default(),
                        reason: failure.message,
                    });
                }
                // Resumed elsewhere: its result is on the record.
                _ => return Err(pending),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(pending);
            }
            // Woken by a change of this execution (stores announce other
            // processes' writes too), else by the safety poll.
            crate::store::next_change(&mut changes, id, deadline).await;
        }
    }

    /// Before an approved call runs (in place or resumed with `inputs`):
    /// what runs must be what was approved, and policies that changed
    /// since are evaluated again. Ends the call if it is not what was
    /// approved or is now denied; parks it again (`Pending`) if the new
    /// policies ask for an approval nobody gave yet.
    pub(crate) async fn recheck(&mut self, inputs: &Json) -> Result<(), GovernError> {
        match crate::binding::check(&self.record.execution, inputs, &self.action.policy_version) {
            Check::Intact => Ok(()),
            Check::Mismatch => {
                let error = GovernError::Denied {
                    execution_id: self.id(),
                    action: self.record.execution.action.to_string(),
                    policy: BINDING_POLICY.into(),
                    rule: Some("digest".into()),
                    reason: "what would run is not what was approved: the action, arguments or \
                             requester changed after the decision"
                        .into(),
                    phase: PolicyPhase::PreExecution,
                };
                let failure = failure_of(&error, BINDING_POLICY);
                self.settle_failed(ExecutionStatus::Failed, failure, EventKind::PolicyViolated)
                    .await?;
                Err(error)
            }
            Check::PoliciesChanged => self.reevaluate().await,
        }
    }

    /// Evaluates the pre-execution policies again for an approved call
    /// whose action's policies changed since it was approved.
    async fn reevaluate(&mut self) -> Result<(), GovernError> {
        // Decided now, not when the run last read the clock (before the
        // wait, or when it was taken from the store).
        self.tick();
        let approvals = self.pre_checks().await?;
        let previous = self.record.execution.approval.clone();
        let missing: Vec<ApprovalSpec> = approvals
            .into_iter()
            .filter(|spec| !previous.as_ref().is_some_and(|r| r.covers(spec)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.park(
            missing,
            std::time::Duration::ZERO,
            ExecutionStatus::Approved,
        )
        .await?;
        Err(GovernError::Pending {
            execution_id: self.id(),
        })
    }

    /// The kill switch on a new call: denied at once in deny mode, before
    /// any hook or policy runs. Returns whether the action is paused (in
    /// hold mode).
    async fn deny_if_paused(&mut self) -> Result<bool, GovernError> {
        if !self.action.pausable {
            return Ok(false);
        }
        match self
            .governor
            .paused_at(&self.action.name, self.now_us / 1000)
            .await
        {
            Some(pause) if pause.mode == PauseMode::Deny => {
                Box::pin(self.deny_paused(pause)).await.map(|()| false)
            }
            seen => Ok(seen.is_some()),
        }
    }

    /// The kill switch on a call cleared to run (from `Pending`, or
    /// `Approved` in place): a new call in deny mode is denied; otherwise
    /// it is held as `Approved` for a resume worker after the lift, and the
    /// caller gets `Pending`.
    async fn hold_if_paused(&mut self, from: ExecutionStatus) -> Result<(), GovernError> {
        if !self.action.pausable {
            return Ok(());
        }
        match self
            .governor
            .paused_at(&self.action.name, self.now_us / 1000)
            .await
        {
            Some(pause) => Box::pin(self.hold(pause, from)).await,
            None => Ok(()),
        }
    }

    /// Holds (or, for a new call in deny mode, denies) a call `pause`
    /// stops.
    async fn hold(&mut self, pause: Pause, from: ExecutionStatus) -> Result<(), GovernError> {
        if from == ExecutionStatus::Pending && pause.mode == PauseMode::Deny {
            self.release_allowed();
            return self.deny_paused(pause).await;
        }
        self.tick();
        let mut t = self.transition(from, ExecutionStatus::Approved);
        t.clear_lease = true;
        let reason = format!("paused by `{}`: {}", pause.by, pause.reason);
        t.events.push(self.event(
            EventKind::ExecutionHeld,
            json_of(&json!({"by": pause.by, "reason": pause.reason})),
        ));
        let record = DecisionRecord {
            policy: Arc::from(KILL_SWITCH),
            outcome: std::borrow::Cow::Borrowed("hold"),
            reason: Some(reason),
            shadow: false,
        };
        self.decisions.push(record, &self.hot.allowed_decisions);
        t.audit = Some(self.audit_record(ExecutionStatus::Approved, None));
        if let Err(e) = self.apply(t).await {
            self.release_unrecorded();
            return Err(e);
        }
        // Held, not ended: the execution stays for a worker after the lift.
        self.settled = true;
        Err(GovernError::Pending {
            execution_id: self.id(),
        })
    }

    async fn deny_paused(&mut self, pause: Pause) -> Result<(), GovernError> {
        let error = GovernError::Paused {
            execution_id: self.id(),
            action: self.record.execution.action.to_string(),
            by: pause.by,
            reason: pause.reason,
        };
        let failure = Failure::new("paused", error.to_string()).with_policy(KILL_SWITCH);
        self.settle_failed(ExecutionStatus::Denied, failure, EventKind::ExecutionDenied)
            .await?;
        Err(error)
    }

    /// A grant letting this call pass approval `policy`, if one exists.
    /// A store failure here means "no grant": the call asks a human.
    async fn standing_grant(&self, policy: &str) -> Option<crate::grant::Grant> {
        match self
            .store()
            .grants(
                &self.record.execution.action,
                &self.record.execution.principal.id,
                self.now,
            )
            .await
        {
            Ok(grants) => grants.into_iter().find(|g| {
                g.covers(
                    policy,
                    &self.action.policy_version,
                    self.record.execution.principal.tenant.as_deref(),
                    self.input.value(),
                    self.now,
                )
            }),
            Err(e) => {
                tracing::warn!(execution_id = %self.id(), "could not read standing grants: {e}");
                None
            }
        }
    }

    /// Gives back what the policies that allowed this call took.
    fn release_allowed(&mut self) {
        let allowed = std::mem::take(&mut self.allowed);
        let ctx = self.policy_context(PolicyPhase::PreExecution);
        for i in allowed.into_iter().map(usize::from) {
            if let Some(policy) = self.action.policies.get(i) {
                policy.release(&ctx);
            }
        }
    }

    /// After a failed first write the call never happened: its quota is
    /// given back.
    fn release_unrecorded(&mut self) {
        if !self.created {
            self.release_allowed();
        }
    }

    fn denial_error(&self, policy: &dyn Policy, denial: Denial, phase: PolicyPhase) -> GovernError {
        let execution_id = self.id();
        let action = self.record.execution.action.to_string();
        let name = policy.name().to_owned();
        let reason = self.redactor.redact_text(&denial.reason);
        match (policy.kind(), denial.retry_after) {
            (PolicyKind::RateLimit, Some(retry_after)) => GovernError::RateLimited {
                execution_id,
                action,
                policy: name,
                retry_after,
            },
            _ if !denial.violations.is_empty() => GovernError::Invalid {
                execution_id,
                action,
                policy: name,
                phase,
                errors: denial.violations,
            },
            _ => GovernError::Denied {
                execution_id,
                action,
                policy: name,
                rule: denial.rule,
                reason,
                phase,
            },
        }
    }

    /// Parks the call from `from` (`Pending`, or `Approved` when changed
    /// policies ask again) with a request for `specs`, bound to the
    /// arguments it will run with.
    async fn park(
        &mut self,
        specs: Vec<ApprovalSpec>,
        wait: std::time::Duration,
        from: ExecutionStatus,
    ) -> Result<(), GovernError> {
        let mut request = ApprovalRequest::new(specs);
        let inputs = self.record.execution.inputs.clone();
        request.bind(&self.record.execution, &inputs, &self.action.policy_version);
        let mut t = self.transition(from, ExecutionStatus::AwaitingApproval);
        // A worker's claim on an approved execution ends with re-parking.
        t.clear_lease = from == ExecutionStatus::Approved;
        let snapshot = self.snapshot(
            Checkpoint::AwaitingApproval,
            self.record.execution.inputs.clone(),
        );
        t.events
            .push(self.event(EventKind::ApprovalRequested, json_of(&request)));
        t.events.push(self.event(
            EventKind::StateCaptured,
            json_of(&json!({"checkpoint": snapshot.checkpoint})),
        ));
        t.snapshot = Some(snapshot);
        t.audit = Some(self.audit_record(ExecutionStatus::AwaitingApproval, None));
        // Sealed after the event was made: only the store keeps it.
        request.sealed_inputs = self.sealed_input();
        t.approval = Some(request);
        if !wait.is_zero() {
            // While its caller waits, the execution is the caller's: resume
            // workers leave it alone until the wait is over.
            t.lease = Some(crate::execution::Lease {
                owner: self.governor.instance().to_owned(),
                until: crate::store::lease_until(self.now, wait),
            });
        }
        t.notifications = self.governor.notifications_for(
            NotificationKind::Requested,
            &self.record.execution,
            t.approval.as_ref(),
            ExecutionStatus::AwaitingApproval,
            self.now,
        );
        let notify = !t.notifications.is_empty();
        self.apply(t).await?;
        // Only now, with the request durable, may anyone hear about it.
        if notify {
            self.governor.kick_delivery();
        }
        self.state_saved(Checkpoint::AwaitingApproval, true);
        Ok(())
    }

    /// The arguments as given, sealed, when the stored ones lost redacted
    /// fields and the governor has a key to seal with.
    fn sealed_input(&self) -> Option<String> {
        let key = self.governor.seal_key()?;
        if !self
            .record
            .execution
            .inputs
            .as_str()
            .contains(crate::redact::REDACTED)
        {
            return None;
        }
        key.seal(&self.record.execution, self.input.text().as_str())
    }

    fn snapshot(&self, checkpoint: Checkpoint, state: Json) -> Snapshot {
        Snapshot {
            execution_id: self.id(),
            checkpoint,
            captured_at: self.now,
            state,
        }
    }

    fn state_saved(&self, checkpoint: Checkpoint, approval_required: bool) {
        if let Some(cb) = &self.action.on_state_saved {
            let state = json!({
                "execution_id": self.id(),
                "action": &*self.record.execution.action,
                "status": self.record.execution.status,
                "checkpoint": checkpoint,
                "inputs": self.record.execution.inputs,
                "captured_at": self.now,
                "approval_required": approval_required,
            });
            cb(self.id(), &state);
        }
    }

    pub(crate) async fn start(&mut self, from: ExecutionStatus) -> Result<(), GovernError> {
        if !self.straight_through(from) {
            self.tick();
        }
        let mut t = self.transition(from, ExecutionStatus::Running);
        let taking = self.take_lease.take();
        // A caller continuing in place drops the lease it held while waiting.
        t.clear_lease = taking.is_none();
        t.lease = taking.clone();
        if self.capture_state {
            t.snapshot = Some(self.snapshot(
                Checkpoint::PreExecution,
                self.record.execution.inputs.clone(),
            ));
            self.queue(self.event(
                EventKind::StateCaptured,
                checkpoint_data(Checkpoint::PreExecution),
            ));
        }
        if let Err(e) = self.apply(t).await {
            self.release_unrecorded();
            if matches!(&e, GovernError::Store(s) if s.kind() == crate::StoreErrorKind::Conflict) {
                // Someone else started it (a worker, a waiting caller): it
                // is theirs, and dropping this run must not cancel it.
                self.settled = true;
            }
            return Err(e);
        }
        self.lease_owner = taking.map(|l| l.owner);
        if self.capture_state {
            self.state_saved(Checkpoint::PreExecution, false);
        }
        Ok(())
    }

    /// Whether nothing has run since the call began (no pre-actions, no
    /// pre-execution policies, no wait), so the start time is the
    /// beginning's time and the clock need not be read again.
    fn straight_through(&self, from: ExecutionStatus) -> bool {
        from == ExecutionStatus::Pending
            && self.action.pre.is_empty()
            && self.action.phase_policies.pre == 0
    }

    pub(crate) async fn finish(&mut self, output: Doc) -> Result<(), GovernError> {
        // The action just returned: this step's time is its end.
        self.tick();
        self.output = Some(output);
        let denied = if self.action.phase_policies.post == 0 {
            None
        } else {
            self.evaluate(PolicyPhase::PostExecution).await.0
        };
        if let Some((policy, denial)) = denied {
            let error = self.denial_error(&*policy, denial, PolicyPhase::PostExecution);
            let mut failure = failure_of(&error, policy.name());
            failure.kind = "post_policy".into();
            Box::pin(self.settle_failed(
                ExecutionStatus::Failed,
                failure,
                EventKind::ExecutionFailed,
            ))
            .await?;
            return Err(error);
        }
        if !self.action.post.is_empty() {
            Box::pin(self.post_actions()).await?;
        }
        let stored_output = self
            .output
            .as_ref()
            .map(|o| redact_doc(&self.redactor, o))
            .unwrap_or_else(Json::null);
        let mut t = self.transition(ExecutionStatus::Running, ExecutionStatus::Completed);
        if self.capture_state {
            t.snapshot = Some(self.snapshot(Checkpoint::PostExecution, stored_output.clone()));
            self.queue(self.event(
                EventKind::StateCaptured,
                checkpoint_data(Checkpoint::PostExecution),
            ));
        }
        let micros = self.reading().micros_since(self.created_us);
        let data = Json::raw_with(|data| {
            data.push_str("{\"output\":");
            data.push_str(stored_output.as_str());
            data.push_str(",\"duration_ms\":");
            push_millis(data, micros);
            data.push('}');
        });
        self.queue(self.event(EventKind::ExecutionCompleted, data));
        t.audit =
            Some(self.closing_audit_record(ExecutionStatus::Completed, None, Some(&stored_output)));
        t.output = Some(stored_output);
        self.apply(t).await
    }

    async fn action_failed(&mut self, message: String) {
        let failure = Failure::new("action", message);
        if let Err(e) = self
            .settle_failed(ExecutionStatus::Failed, failure, EventKind::ExecutionFailed)
            .await
        {
            tracing::error!(execution_id = %self.id(), "could not record the action's failure: {e}");
        }
    }

    async fn unrecordable_output(&mut self, reason: String) -> GovernError {
        let error = GovernError::Serialization {
            action: self.record.execution.action.to_string(),
            what: "output".into(),
            reason,
        };
        let failure = Failure::new("serialization", error.to_string());
        if let Err(e) = self
            .settle_failed(ExecutionStatus::Failed, failure, EventKind::ExecutionFailed)
            .await
        {
            return e;
        }
        error
    }
}

thread_local! {
    /// One step box (with its event list) kept between runs on this thread.
    static SPARE_STEP: std::cell::Cell<Option<Box<Transition>>> = const { std::cell::Cell::new(None) };
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if self.settled || !self.created {
            self.keep_spare_step();
            return;
        }
        // The caller's future was dropped mid-call. Record that, so the
        // execution never stays "running" for ever.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(execution_id = %self.id(), "cancelled outside a runtime; status left unchanged");
            return;
        };
        let from = StatusSet::only(ExecutionStatus::Pending)
            .with(ExecutionStatus::Approved)
            .with(ExecutionStatus::Running);
        self.tick();
        let mut t = Transition::at(self.now, self.id(), from, ExecutionStatus::Cancelled);
        t.lease_owner = self.lease_owner.clone();
        let failure = Failure::new(
            "cancelled",
            "the caller stopped waiting before the call finished",
        );
        let event = self.event(
            EventKind::ExecutionCancelled,
            json_of(&json!({"error": failure.message})),
        );
        t.events = std::mem::take(&mut self.queued);
        t.events.push(event);
        let ms = self.reading().unix_ms();
        stamp(&mut self.stamps, ms, &mut t.events);
        t.audit = Some(self.audit_record(ExecutionStatus::Cancelled, Some(&failure)));
        t.failure = Some(failure);
        let store = Arc::clone(self.governor.store());
        let events = self.governor.events().clone();
        let action = Arc::clone(&self.record.execution.action);
        runtime.spawn(async move {
            match store.transition(&t).await {
                Ok(()) => t
                    .events
                    .into_iter()
                    .for_each(|e| events.emit(e.into_event(t.id, Arc::clone(&action)))),
                Err(e) => {
                    tracing::warn!(execution_id = %t.id, "could not record cancellation: {e}")
                }
            }
        });
    }
}

/// Gives the events of a write their ids, with one atomic operation for
/// all of them: in the order queued, after every id this execution's
/// events had (see [`RunStamps`]), so its ids sort in the order the store
/// took its events. The first write uses the stamps reserved
/// with the execution id when there are enough of them from this
/// millisecond.
fn stamp(stamps: &mut RunStamps, unix_ms: u64, events: &mut [EventRecord]) {
    let unstamped = events.iter().filter(|e| e.id.is_nil()).count();
    if unstamped == 0 {
        return;
    }
    let mut run = match stamps.reserved.take() {
        Some(s) if s.cover(unix_ms, unstamped) => s,
        _ => match stamps.own_after {
            Some(after) => crate::ids::Stamps::reserve_after(unix_ms, unstamped, after),
            None => crate::ids::Stamps::reserve(unix_ms, unstamped),
        },
    };
    for e in events.iter_mut().filter(|e| e.id.is_nil()) {
        e.id = run.next_id();
    }
    if stamps.own_after.is_some() {
        stamps.own_after = Some(run.last_given());
    }
}

/// Where a run's event ids come from (see [`crate::ids`]).
#[derive(Debug, Default)]
struct RunStamps {
    /// Reserved with the execution id, for the first write's events.
    reserved: Option<crate::ids::Stamps>,
    /// While the run has had its execution to itself, the last stamp it
    /// gave: its next stamps need only sort after that one and its
    /// thread's. `None` once anyone else may have written the execution's
    /// events (a decision while it waited, a run resumed from the store):
    /// then they sort after every thread's.
    own_after: Option<u64>,
}

/// Writes `n` in decimal (without the formatting machinery, which costs
/// more than the rest of the event's text).
fn push_digits(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[at..].iter().for_each(|&d| out.push(char::from(d)));
}

/// Writes `micros` as a JSON number of milliseconds with up to three
/// decimals (`1.5`, `12`, `0.007`), without going through `f64`
/// formatting, which cost ~4% of a governed call.
fn push_millis(out: &mut String, micros: i64) {
    if micros < 0 {
        out.push('-');
    }
    let micros = micros.unsigned_abs();
    let (whole, frac) = (micros / 1000, micros % 1000);
    push_digits(out, whole);
    if frac != 0 {
        out.push('.');
        let mut rest = frac;
        let mut scale = 100;
        while rest != 0 {
            let digit = u8::try_from(rest / scale).unwrap_or(0);
            out.push(char::from(b'0' + digit));
            rest %= scale;
            scale /= 10;
        }
    }
}

fn with_action(e: GovernError, action: &str) -> GovernError {
    match e {
        GovernError::Serialization { what, reason, .. } => GovernError::Serialization {
            action: action.to_owned(),
            what,
            reason,
        },
        other => other,
    }
}

fn failure_of(error: &GovernError, policy: &str) -> Failure {
    let kind = match error {
        GovernError::RateLimited { .. } => "rate_limited",
        GovernError::Invalid { .. } => "invalid",
        _ => "denied",
    };
    Failure::new(kind, error.to_string()).with_policy(policy)
}

/// The stored form of `doc`: its text, unless something in it is redacted.
fn redact_doc(redactor: &Redactor, doc: &Doc) -> Json {
    let text = doc.text();
    if redactor.may_match(text.as_str()) {
        Json::from(&redactor.redact(doc.value()))
    } else {
        text.clone()
    }
}

thread_local! {
    /// The id of the principal this thread's last audit record named.
    static PRINCIPAL_ID: std::cell::Cell<Option<Arc<str>>> = const { std::cell::Cell::new(None) };
}

/// `principal`'s id, shared with this thread's earlier audit records of
/// the same principal (a copy per record cost an allocation per call).
fn shared_id(principal: &Principal) -> Arc<str> {
    let id = match PRINCIPAL_ID.take() {
        Some(id) if *id == *principal.id => id,
        _ => Arc::from(principal.id.as_str()),
    };
    PRINCIPAL_ID.set(Some(Arc::clone(&id)));
    id
}

fn json_of<T: serde::Serialize>(value: &T) -> Json {
    Json::encode(value).unwrap_or_else(|_| Json::null())
}

impl fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("execution", &self.record.execution.id)
            .finish_non_exhaustive()
    }
}

/// Indices of the policies that allowed a call, inline for the usual few.
type Allowed = smallvec::SmallVec<[u16; 8]>;

/// A policy's index as kept in [`Allowed`] (an action has far fewer than
/// 65,536 policies; more would only stop quota from being given back).
fn policy_index(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// `{"checkpoint": "..."}`, built once per checkpoint.
fn checkpoint_data(checkpoint: Checkpoint) -> Json {
    use crate::per_thread::PerThread;
    static PRE: PerThread<Json> = PerThread::new();
    static POST: PerThread<Json> = PerThread::new();
    match checkpoint {
        Checkpoint::PreExecution => PRE
            .get(|| json_of(&json!({"checkpoint": "pre_execution"})))
            .clone(),
        Checkpoint::PostExecution => POST
            .get(|| json_of(&json!({"checkpoint": "post_execution"})))
            .clone(),
        Checkpoint::AwaitingApproval => json_of(&json!({"checkpoint": checkpoint})),
    }
}

/// The data of a `policy.evaluated` event.
pub(crate) fn decision_data(
    policy: &dyn Policy,
    phase: PolicyPhase,
    outcome: &str,
    reason: Option<&str>,
) -> Json {
    json_of(&json!({
        "policy": policy.name(),
        "policy_type": policy.kind().as_str(),
        "phase": phase.as_str(),
        "outcome": outcome,
        "reason": reason,
        "shadow": policy.is_shadow(),
    }))
}

/// A policy's `allow` event data for both phases, built once per action.
#[derive(Clone)]
pub(crate) struct AllowData {
    pre: Json,
    post: Json,
}

impl AllowData {
    /// The same data in allocations of its own.
    pub(crate) fn copy(&self) -> Self {
        Self {
            pre: self.pre.copy(),
            post: self.post.copy(),
        }
    }

    pub(crate) fn new(policy: &dyn Policy) -> Self {
        Self {
            pre: decision_data(policy, PolicyPhase::PreExecution, "allow", None),
            post: decision_data(policy, PolicyPhase::PostExecution, "allow", None),
        }
    }

    fn for_phase(&self, phase: PolicyPhase) -> Json {
        if phase == PolicyPhase::PostExecution {
            self.post.clone()
        } else {
            self.pre.clone()
        }
    }
}

/// The caller of calls made without one, shared by all of them.
fn anonymous() -> Arc<Principal> {
    static ANONYMOUS: std::sync::LazyLock<Arc<Principal>> =
        std::sync::LazyLock::new(|| Arc::new(Principal::anonymous()));
    Arc::clone(&ANONYMOUS)
}

/// What the pre-execution policies decided.
enum Gate {
    /// Run now.
    Proceed,
    /// Parked for approval; the caller may wait this long.
    Parked { wait: std::time::Duration },
}

/// The name under which a refused approval binding is recorded.
/// The name under which the kill switch's decisions are recorded.
pub(crate) const KILL_SWITCH: &str = "kill switch";

pub(crate) const BINDING_POLICY: &str = "approval binding";

/// Runs an approved execution with its action's resume handler, through the
/// same steps as a call that was approved while its caller waited: the
/// `Approved → Running` change (only one runner can make it), the handler,
/// post-execution policies and post-actions, completion.
pub(crate) async fn run_resumed(
    governor: &Governor,
    action: &Action,
    execution: Execution,
    runnable: crate::resume::Runnable,
    handler: &crate::action::ResumeFn,
    taken_over: bool,
) -> Result<(), GovernError> {
    let input = runnable.input;
    let owner = governor.instance().to_owned();
    let lease = governor.resume_lease();
    let id = execution.id;
    let mut run = Run::resumed(action, governor, execution, input.clone(), None);
    if taken_over {
        // Already `Running` under a lease just claimed from a dead runner.
        run.lease_owner = Some(owner.clone());
    } else {
        run.take_lease = Some(crate::execution::Lease {
            owner: owner.clone(),
            until: crate::store::lease_until(chrono::Utc::now(), lease),
        });
        run.recheck(&runnable.bound).await?;
        run.start(ExecutionStatus::Approved).await?;
    }
    // Renew the lease while the action runs, so that only a runner that
    // died loses it.
    let work = handler(input);
    tokio::pin!(work);
    let mut renew = tokio::time::interval((lease / 3).max(std::time::Duration::from_millis(1)));
    renew.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = renew.tick() => {
                if let Err(e) = governor.store().renew_lease(id, &owner, lease).await {
                    tracing::warn!(execution_id = %id, "could not renew the resume lease: {e}");
                }
            }
        }
    };
    match result {
        Ok(output) => run.finish(Doc::from_value(output)).await,
        Err(message) => {
            run.action_failed(message).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{push_millis, shared_id};
    use crate::store::EventQuery;
    use crate::*;

    #[test]
    fn a_principal_id_is_shared_by_repeated_records_and_right_for_each() {
        let (a, b) = (Principal::new("agent-a"), Principal::new("agent-b"));
        let first = shared_id(&a);
        assert!(Arc::ptr_eq(&first, &shared_id(&a)));
        assert_eq!(&*shared_id(&b), "agent-b");
        assert_eq!(&*shared_id(&a), "agent-a");
    }

    /// A decision made on another thread whose stamps run ahead of the
    /// caller's (a busy millisecond there) sorts after the parked call's
    /// events, and what the waiting caller writes once approved sorts
    /// after the decision: ids give the order things happened in.
    #[tokio::test]
    async fn a_caller_that_waited_stamps_after_the_decision() {
        let g = Governor::builder().build().unwrap();
        let wait = std::time::Duration::from_secs(10);
        let action = g
            .action("large_transfer")
            .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(wait))
            .build()
            .unwrap();
        let mut changes = g.store().watch();
        let approver = {
            let g = g.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let id = loop {
                        let change = changes.recv().await.unwrap();
                        if change.status == ExecutionStatus::AwaitingApproval {
                            break change.id;
                        }
                    };
                    let ahead = crate::ids::read().unix_ms() + 60_000;
                    crate::ids::Stamps::reserve_after(ahead, 1, 0);
                    let cfo = Principal::new("carol").with_attribute("email", "CFO@company.com");
                    g.approve(id, &cfo, Some("ok")).await.unwrap();
                    id
                })
            })
        };
        action
            .run_as(
                Principal::new("agent-7"),
                Args::new().arg("amount", &50_000),
                || async { Ok::<_, GovernError>(()) },
            )
            .await
            .unwrap();
        let id = approver.join().unwrap();
        let query = EventQuery {
            execution_id: Some(id),
            ..Default::default()
        };
        let kinds: Vec<EventKind> = g
            .store()
            .events(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        let at = |kind| kinds.iter().position(|k| *k == kind).unwrap();
        assert_eq!(at(EventKind::ExecutionStarted), 0, "{kinds:?}");
        assert!(
            at(EventKind::ApprovalRequested) < at(EventKind::ApprovalGranted),
            "{kinds:?}"
        );
        assert!(
            at(EventKind::ApprovalGranted) < kinds.len() - 1,
            "{kinds:?}"
        );
        assert_eq!(
            kinds.last(),
            Some(&EventKind::ExecutionCompleted),
            "{kinds:?}"
        );
    }

    #[test]
    fn millis_are_written_like_json_numbers() {
        for (micros, text) in [
            (0, "0"),
            (1_500, "1.5"),
            (12_000, "12"),
            (7, "0.007"),
            (1_010, "1.01"),
            (-2_250, "-2.25"),
            (9_876_543_210_123, "9876543210.123"),
        ] {
            let mut out = String::new();
            push_millis(&mut out, micros);
            assert_eq!(out, text, "{micros} µs");
            let parsed: f64 = serde_json::from_str(&out).unwrap();
            assert!((parsed * 1000.0 - micros as f64).abs() < 1e-6);
        }
    }
}
