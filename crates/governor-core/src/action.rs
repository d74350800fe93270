//! Governed actions built at run time, and the pieces `#[govern]` expands to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::GovernError;
use crate::execution::ExecutionId;
use crate::governor::Governor;
use crate::json::{Doc, Json};
use crate::policy::{AuditSettings, Policy, PolicyPhase};
use crate::principal::Principal;
use crate::redact::Redactor;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a pre- or post-action hook sees.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The action's name.
    pub action: Arc<str>,
    /// The bound inputs (unredacted).
    pub input: Arc<Value>,
    /// The output (post-actions only).
    pub output: Option<Arc<Value>>,
    /// The caller.
    pub principal: Arc<Principal>,
}

type HookFn = dyn Fn(HookContext) -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// A pre- or post-action: setup, logging, notification, cleanup.
///
/// A pre-action that fails stops the call (the execution fails); a
/// post-action that fails marks the execution failed after the action's
/// side effects already happened.
#[derive(Clone)]
pub struct Hook {
    name: String,
    f: Arc<HookFn>,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook").field("name", &self.name).finish()
    }
}

impl Hook {
    /// A hook from an async closure returning `Result<(), String>`.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            f: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }

    /// The hook's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn call(&self, ctx: HookContext) -> BoxFuture<'static, Result<(), String>> {
        (self.f)(ctx)
    }
}

/// Runs an action from its stored arguments (a JSON object bound by name)
/// when a parked execution is resumed; returns its output as JSON or the
/// error's message.
pub type ResumeFn = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Called with the execution id and the saved state each time state is
/// saved (before the action runs, and when a call is parked for approval).
pub type StateCallback = Arc<dyn Fn(ExecutionId, &Value) + Send + Sync>;

/// Arguments bound by parameter name.
///
/// They are written as JSON text as they are bound (in the order bound),
/// so a call whose policies never read them never builds a `Value`.
///
/// ```
/// use governor_core::Args;
/// let args = Args::new().arg("amount", &5000).arg("recipient", "Acme");
/// assert_eq!(args.into_value().unwrap()["amount"], 5000);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Args {
    /// `{"name":value,...` without the closing brace.
    text: Vec<u8>,
    /// One bit per name bound, picked by a hash of the name: a bit hit
    /// twice may be a name bound twice.
    names: u64,
    /// A name may have been bound twice: the text is read back as a map,
    /// where the last binding wins.
    rebound: bool,
    /// The first argument that could not be serialized, and why.
    error: Option<Box<(String, String)>>,
    /// The arguments as a map too, for an action whose policies or hooks
    /// read them ([`Action::args`]): building it costs less than parsing
    /// the text back. Often the map of the action's last call on this
    /// thread, its names kept ([`recycle_args`]).
    value: Option<Arc<Value>>,
    /// Names bound into `value`: the map is used only if it holds exactly
    /// those (none left over from a call that bound others).
    bound: usize,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to the serialized `value` (a name bound again is
    /// replaced). A value that fails to serialize makes the call fail
    /// with [`GovernError::Serialization`] before anything runs.
    #[must_use]
    pub fn arg<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if self.error.is_some() {
            return self;
        }
        let start = self.text.len();
        if start == 0 {
            if self.text.capacity() == 0 {
                self.text = ARGS_BUFFER.take();
            }
            self.text.reserve(64);
        }
        self.text.push(if start == 0 { b'{' } else { b',' });
        let key_at = self.text.len();
        let written = write_name(&mut self.text, name).and_then(|()| {
            let bit = 1u64 << (name_hash(&self.text[key_at..]) % 64);
            self.rebound |= self.names & bit != 0;
            self.names |= bit;
            self.text.push(b':');
            serde_json::to_writer(&mut self.text, value)
        });
        let written = written.and_then(|()| match self.value.as_mut().map(Arc::make_mut) {
            Some(Value::Object(map)) => serde_json::to_value(value).map(|v| {
                // A recycled map has the name already: no new key.
                match map.get_mut(name) {
                    Some(slot) => *slot = v,
                    None => {
                        map.insert(name.to_owned(), v);
                    }
                }
                self.bound += 1;
            }),
            _ => Ok(()),
        });
        if let Err(e) = written {
            self.text.truncate(start);
            self.error = Some(Box::new((name.to_owned(), e.to_string())));
        }
        self
    }

    /// Binds an already-serialized value.
    #[must_use]
    pub fn value(self, name: &str, value: Value) -> Self {
        self.arg(name, &value)
    }

    /// Binds every field of a struct (or map) as an argument.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, GovernError> {
        match serde_json::to_value(value) {
            Ok(Value::Object(map)) => Ok(map
                .iter()
                .fold(Self::new(), |args, (name, v)| args.arg(name, v))),
            Ok(other) => Err(GovernError::Config(format!(
                "arguments must serialize to an object of named fields, got {}",
                kind_of(&other)
            ))),
            Err(e) => Err(GovernError::Serialization {
                action: String::new(),
                what: "arguments".into(),
                reason: e.to_string(),
            }),
        }
    }

    /// The bound arguments as a JSON object.
    pub fn into_value(self) -> Result<Value, GovernError> {
        self.into_json().map(|json| json.value())
    }

    /// The bound arguments as JSON text.
    pub(crate) fn into_json(self) -> Result<Json, GovernError> {
        self.into_doc().map(|doc| doc.text().clone())
    }

    /// The bound arguments as text, with their value when it was built.
    pub(crate) fn into_doc(mut self) -> Result<Doc, GovernError> {
        if let Some((what, reason)) = self.error.map(|e| *e) {
            return Err(GovernError::Serialization {
                action: String::new(),
                what,
                reason,
            });
        }
        if self.rebound {
            // As a map, a repeated name keeps its last value.
            self.text.push(b'}');
            let map: Map<String, Value> = serde_json::from_slice(&self.text).unwrap_or_default();
            return Ok(Doc::from_value(Value::Object(map)));
        }
        let text = if self.text.is_empty() {
            Json::raw_with(|t| t.push_str("{}"))
        } else {
            self.text.push(b'}');
            let text = Json::from_utf8(&self.text);
            if self.text.capacity() <= KEPT_ARGS_BYTES {
                self.text.clear();
                ARGS_BUFFER.set(std::mem::take(&mut self.text));
            }
            text
        };
        let bound = self.bound;
        Ok(match self.value {
            Some(v) if matches!(&*v, Value::Object(map) if map.len() == bound) => {
                Doc::from_shared(text, v)
            }
            // Names left over from another call's arguments: the map is
            // parsed from the text if anything reads it.
            _ => Doc::from_text(text),
        })
    }
}

/// Writes `name` as a JSON string: as it is when nothing in it needs
/// escaping (a parameter name never does), else through serde_json.
fn write_name(out: &mut Vec<u8>, name: &str) -> Result<(), serde_json::Error> {
    if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, name)
    }
}

/// Largest argument buffer kept for the thread's next call.
const KEPT_ARGS_BYTES: usize = 4 << 10;

thread_local! {
    /// The buffer the last call's arguments were written in: their text is
    /// copied into a shared allocation, so the buffer serves the next call.
    static ARGS_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    /// The argument map of the last call on this thread that nobody kept,
    /// with the action it was made for (by address): the same action's
    /// next call binds the same names, so it rebinds their values without
    /// allocating the map, its names or its shared box.
    static SPARE_ARGS: std::cell::Cell<Option<(usize, Arc<Value>)>> = const { std::cell::Cell::new(None) };
}

/// Keeps `value`, the argument map of a finished call of `action`, for
/// the thread's next call, if nothing else holds it.
pub(crate) fn recycle_args(action: &Action, mut value: Arc<Value>) {
    if Arc::get_mut(&mut value).is_some_and(|v| v.is_object()) {
        SPARE_ARGS.set(Some((action_tag(action), value)));
    }
}

/// An empty argument map for a call of `action`: the thread's spare one
/// (its names kept when it was `action`'s), else a new one.
fn args_map(action: &Action) -> Arc<Value> {
    match SPARE_ARGS.take() {
        Some((tag, value)) if tag == action_tag(action) => value,
        Some((_, mut value)) => {
            if let Some(Value::Object(map)) = Arc::get_mut(&mut value) {
                map.clear();
            }
            value
        }
        None => Arc::new(Value::Object(Map::new())),
    }
}

fn action_tag(action: &Action) -> usize {
    std::ptr::from_ref(action).addr()
}

/// A cheap hash of a name: its length and its first and last bytes (a
/// collision only costs a parse of the arguments, never a wrong result).
fn name_hash(bytes: &[u8]) -> u64 {
    let edge = |b: Option<&u8>| u64::from(b.copied().unwrap_or(0));
    (bytes.len() as u64)
        .wrapping_mul(31)
        .wrapping_add(edge(bytes.get(1)) * 7)
        .wrapping_add(edge(bytes.iter().rev().nth(1)))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Clone)]
pub(crate) enum GovernorRef {
    Global,
    Fixed(Governor),
}

/// The shared parts of an action that every call clones, as one
/// thread's copy (see [`crate::per_thread`]): the same values, in
/// allocations whose reference counts only that thread's calls touch.
pub(crate) struct Hot {
    pub(crate) name: Arc<str>,
    pub(crate) allowed_decisions: Arc<[crate::audit::DecisionRecord]>,
    pub(crate) allow_data: Vec<crate::lifecycle::AllowData>,
    pub(crate) audit_tags: Arc<[String]>,
}

impl Action {
    /// How its requests read to an approver, if declared.
    pub fn display(&self) -> Option<&crate::Display> {
        self.display.as_deref()
    }

    /// Whether calls capture state snapshots: the action's setting, else
    /// `governor`'s.
    pub(crate) fn captures_state(&self, governor: &Governor) -> bool {
        self.capture_state
            .unwrap_or_else(|| governor.capture_state())
    }

    /// This thread's copy of the parts every call clones.
    pub(crate) fn hot(&self) -> &Hot {
        self.hot.get(|| Hot {
            name: Arc::from(&*self.name),
            allowed_decisions: self.allowed_decisions.iter().cloned().collect(),
            allow_data: self.allow_data.iter().map(|d| d.copy()).collect(),
            audit_tags: self.audit_tags.iter().cloned().collect(),
        })
    }
}

/// A governed action: its name, policies, hooks and settings. Built once,
/// called many times; policies keep their state (rate limits) across calls.
#[derive(Clone)]
pub struct Action {
    pub(crate) name: Arc<str>,
    pub(crate) governor: GovernorRef,
    pub(crate) policies: Vec<Arc<dyn Policy>>,
    pub(crate) pre: Vec<Hook>,
    pub(crate) post: Vec<Hook>,
    pub(crate) capture_state: Option<bool>,
    pub(crate) on_state_saved: Option<StateCallback>,
    pub(crate) redactor: Redactor,
    pub(crate) audit: Option<AuditSettings>,
    /// `audit`'s compliance tags, shared by every call's audit record.
    pub(crate) audit_tags: Arc<[String]>,
    pub(crate) allow_data: Vec<crate::lifecycle::AllowData>,
    pub(crate) policy_names: Vec<Arc<str>>,
    /// The decisions of a call every policy allows, in the order they run
    /// (see [`crate::decisions::Decisions`]).
    pub(crate) allowed_decisions: Arc<[crate::audit::DecisionRecord]>,
    /// What every call clones, copied per thread (see [`Hot`]).
    pub(crate) hot: Arc<crate::per_thread::PerThread<Hot>>,
    /// Whether policies or hooks read the arguments (see [`Action::args`]).
    pub(crate) reads_input: bool,
    /// How many policies apply before the body runs, and after: a call's
    /// decisions number their sum.
    pub(crate) phase_policies: PhaseCounts,
    /// Whether a post-execution policy reads the result
    /// ([`Policy::reads_output`]).
    pub(crate) policies_read_output: bool,
    pub(crate) resume: Option<ResumeFn>,
    /// A label folded into the policy version (see
    /// [`ActionBuilder::policy_version`]).
    pub(crate) policy_label: Option<String>,
    /// The version of the policies approvals are bound to.
    pub(crate) policy_version: Arc<str>,
    /// Whether the kill switch applies (not to pausing and lifting).
    pub(crate) pausable: bool,
    /// Set for actions whose body runs elsewhere: how long a runner has to
    /// report the outcome.
    pub(crate) external: Option<std::time::Duration>,
    /// How its requests read to an approver.
    pub(crate) display: Option<Arc<crate::Display>>,
}

/// The number of an action's policies that apply in each phase.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PhaseCounts {
    pub(crate) pre: usize,
    pub(crate) post: usize,
}

impl PhaseCounts {
    fn of(policies: &[Arc<dyn Policy>]) -> Self {
        let count = |phase| {
            policies
                .iter()
                .filter(|p| p.phase().applies_to(phase))
                .count()
        };
        Self {
            pre: count(PolicyPhase::PreExecution),
            post: count(PolicyPhase::PostExecution),
        }
    }

    /// How many policies apply in `phase`.
    pub(crate) fn get(self, phase: PolicyPhase) -> usize {
        match phase {
            PolicyPhase::PreExecution => self.pre,
            PolicyPhase::PostExecution => self.post,
            PolicyPhase::Both => self.pre + self.post,
        }
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.policies.iter().map(|p| p.name()).collect();
        f.debug_struct("Action")
            .field("name", &self.name)
            .field("policies", &names)
            .finish_non_exhaustive()
    }
}

impl Action {
    /// Starts building an action that uses the global governor.
    pub fn builder(name: impl Into<String>) -> ActionBuilder {
        ActionBuilder::new(name)
    }

    /// The action's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the action runs outside this process: agents submit it by
    /// name over HTTP and report its outcome (see
    /// [`ActionBuilder::external`]).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// The policies, in evaluation order.
    pub fn policies(&self) -> &[Arc<dyn Policy>] {
        &self.policies
    }

    /// The version of the policies that approvals of this action are
    /// bound to (see [`ActionBuilder::policy_version`]).
    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// The governor this action records into.
    pub fn governor(&self) -> &Governor {
        match &self.governor {
            GovernorRef::Global => Governor::global(),
            GovernorRef::Fixed(g) => g,
        }
    }

    /// Arguments for a call of this action. They are also kept as a map
    /// when its policies or hooks will read them, which spares parsing
    /// their text back; `#[govern]` binds its arguments this way.
    pub fn args(&self) -> Args {
        Args {
            value: self.reads_input.then(|| args_map(self)),
            ..Args::new()
        }
    }

    /// Runs `f` governed, as the current principal
    /// ([`Principal::scope`]) or anonymously.
    pub async fn run<T, E, F, Fut>(&self, args: Args, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize,
        E: From<GovernError> + fmt::Display,
    {
        self.run_with(Call::new(args), f, serde_output, display_error)
            .await
    }

    /// Runs `f` governed, on behalf of `principal`.
    pub async fn run_as<T, E, F, Fut>(&self, principal: Principal, args: Args, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize,
        E: From<GovernError> + fmt::Display,
    {
        self.run_with(
            Call::new(args).principal(principal),
            f,
            serde_output,
            display_error,
        )
        .await
    }
}

fn serde_output<T: Serialize>(t: &T) -> Option<Result<Json, String>> {
    Some(Json::encode(t).map_err(|e| e.to_string()))
}

fn display_error<E: fmt::Display>(e: &E) -> String {
    e.to_string()
}

/// One call's arguments and caller.
#[derive(Debug, Clone)]
pub struct Call {
    pub(crate) args: Args,
    pub(crate) principal: Option<Arc<Principal>>,
}

impl Call {
    /// A call with these arguments.
    pub fn new(args: Args) -> Self {
        Self {
            args,
            principal: None,
        }
    }

    /// Names the caller (otherwise the task-local principal, or anonymous).
    #[must_use]
    pub fn principal(mut self, principal: Principal) -> Self {
        self.principal = Some(Arc::new(principal));
        self
    }

    /// Names the caller, if any.
    #[must_use]
    pub fn maybe_principal(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal.map(Arc::new);
        self
    }
}

/// Configures an [`Action`].
#[must_use]
pub struct ActionBuilder {
    pub(crate) action: Action,
}

impl ActionBuilder {
    /// An action named `name` on the global governor.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            action: Action {
                name: name.into().into(),
                governor: GovernorRef::Global,
                policies: Vec::new(),
                pre: Vec::new(),
                post: Vec::new(),
                capture_state: None,
                on_state_saved: None,
                redactor: Redactor::default(),
                audit: None,
                audit_tags: Arc::default(),
                allow_data: Vec::new(),
                allowed_decisions: Arc::default(),
                hot: Arc::default(),
                policy_names: Vec::new(),
                reads_input: false,
                phase_policies: PhaseCounts::default(),
                policies_read_output: false,
                resume: None,
                policy_label: None,
                policy_version: Arc::from(""),
                pausable: true,
                external: None,
                display: None,
            },
        }
    }

    /// Records into `governor` instead of the global one.
    pub fn governor(mut self, governor: Governor) -> Self {
        self.action.governor = GovernorRef::Fixed(governor);
        self
    }

    /// Adds a policy.
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.action.policies.push(Arc::new(policy));
        self
    }

    /// Adds policies shared with other actions (or loaded from a file).
    pub fn policies<I>(mut self, policies: I) -> Self
    where
        I: IntoIterator<Item = Arc<dyn Policy>>,
    {
        self.action.policies.extend(policies);
        self
    }

    /// Adds a pre-action.
    pub fn pre(mut self, hook: Hook) -> Self {
        self.action.pre.push(hook);
        self
    }

    /// Adds a post-action.
    pub fn post(mut self, hook: Hook) -> Self {
        self.action.post.push(hook);
        self
    }

    /// Whether to capture snapshots (default: the governor's setting).
    pub fn capture_state(mut self, capture: bool) -> Self {
        self.action.capture_state = Some(capture);
        self
    }

    /// Called each time state is saved.
    pub fn on_state_saved<F>(mut self, f: F) -> Self
    where
        F: Fn(ExecutionId, &Value) + Send + Sync + 'static,
    {
        self.action.on_state_saved = Some(Arc::new(f));
        self
    }

    /// Makes the action resumable: after a human approves a parked call,
    /// `handler` runs it from the stored arguments (deserialized into `I`,
    /// a struct whose fields are the parameters), on whichever instance
    /// calls [`Governor::resume`]. Building the action registers it with
    /// its governor under its name.
    pub fn resumable<I, T, E, F, Fut>(mut self, handler: F) -> Self
    where
        I: serde::de::DeserializeOwned,
        T: Serialize,
        E: fmt::Display,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.action.resume = Some(Arc::new(
            move |input: Value| -> BoxFuture<'static, Result<Value, String>> {
                match serde_json::from_value::<I>(input) {
                    Ok(args) => {
                        let fut = handler(args);
                        Box::pin(async move {
                            match fut.await {
                                Ok(out) => serde_json::to_value(out).map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            }
                        })
                    }
                    Err(e) => {
                        let message =
                            format!("stored arguments do not fit the action's parameters: {e}");
                        Box::pin(async move { Err(message) })
                    }
                }
            },
        ));
        self
    }

    /// A label for this action's policy code (say `"refunds-2026-11"`).
    /// Approvals are bound to the policy version, computed from each
    /// policy's settings and this label: a call approved under another
    /// version is evaluated again before it runs. Change the label when a
    /// policy's code (a closure) changes in a way its settings do not show.
    pub fn policy_version(mut self, label: impl Into<String>) -> Self {
        self.action.policy_label = Some(label.into());
        self
    }

    /// Marks the action as run elsewhere (an agent in another process or
    /// language, through [`Action::admit`] or the HTTP API): the runner
    /// has `report_within` to report the outcome with
    /// [`Governor::complete_external`](crate::Governor::complete_external)
    /// before the execution is marked failed. Building registers it.
    pub fn external(mut self, report_within: std::time::Duration) -> Self {
        self.action.external = Some(report_within);
        self
    }

    /// Declares how its requests read to an approver: a title such as
    /// "Wire {amount:currency(EUR)} to {to}", the arguments to show first
    /// and what approving does. The console, the CLI and notifications
    /// show it; [`build`](Self::build) checks it.
    pub fn display(mut self, display: crate::Display) -> Self {
        self.action.display = Some(Arc::new(display));
        self
    }

    /// Builds the action.
    pub fn build(mut self) -> Result<Action, GovernError> {
        if self.action.name.trim().is_empty() {
            return Err(GovernError::Config(
                "an action needs a non-empty name".into(),
            ));
        }
        if let Some(display) = &self.action.display {
            display
                .check()
                .map_err(|e| GovernError::Config(format!("action `{}`: {e}", self.action.name)))?;
        }
        let a = &mut self.action;
        a.allow_data = a
            .policies
            .iter()
            .map(|p| crate::lifecycle::AllowData::new(&**p))
            .collect();
        a.policy_names = a.policies.iter().map(|p| Arc::from(p.name())).collect();
        a.allowed_decisions = [PolicyPhase::PreExecution, PolicyPhase::PostExecution]
            .into_iter()
            .flat_map(|phase| {
                let a = &*a;
                a.policies
                    .iter()
                    .zip(&a.policy_names)
                    .filter(move |(p, _)| p.phase().applies_to(phase))
                    .map(|(p, name)| crate::audit::DecisionRecord {
                        policy: Arc::clone(name),
                        outcome: std::borrow::Cow::Borrowed("allow"),
                        reason: None,
                        shadow: p.is_shadow(),
                    })
            })
            .collect();
        a.reads_input = !a.policies.is_empty() || !a.pre.is_empty() || !a.post.is_empty();
        a.phase_policies = PhaseCounts::of(&a.policies);
        a.policies_read_output = a
            .policies
            .iter()
            .any(|p| p.phase().applies_to(PolicyPhase::PostExecution) && p.reads_output());
        for p in &a.policies {
            a.redactor.extend(p.sensitive_fields());
            for (field, mask) in p.masks() {
                a.redactor.mask(field, *mask);
            }
            if let Some(s) = p.audit_settings() {
                let merged = a.audit.get_or_insert(AuditSettings {
                    log_inputs: false,
                    log_outputs: false,
                    compliance_tags: Vec::new(),
                });
                merged.log_inputs |= s.log_inputs;
                merged.log_outputs |= s.log_outputs;
                for t in &s.compliance_tags {
                    if !merged.compliance_tags.contains(t) {
                        merged.compliance_tags.push(t.clone());
                    }
                }
            }
        }
        self.action.audit_tags = self
            .action
            .audit
            .as_ref()
            .map(|s| Arc::from(s.compliance_tags.as_slice()))
            .unwrap_or_default();
        self.action.policy_version = crate::binding::policy_version(
            &self.action.policies,
            self.action.policy_label.as_deref(),
        );
        if self.action.resume.is_some() || self.action.external.is_some() {
            self.action.governor().register(&self.action);
        } else if let Some(display) = &self.action.display {
            self.action
                .governor()
                .remember_display(&self.action.name, display);
        }
        Ok(self.action)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn args_are_written_in_order_and_a_name_bound_again_is_replaced() {
        let args = Args::new().arg("b", &1).arg("a", "x");
        assert_eq!(args.into_json().unwrap().as_str(), r#"{"b":1,"a":"x"}"#);
        let again = Args::new().arg("a", &1).arg("b", &2).arg("a", &[3]);
        assert_eq!(again.into_value().unwrap(), json!({"a": [3], "b": 2}));
        assert_eq!(Args::new().into_json().unwrap().as_str(), "{}");
        let quoted = Args::new().arg("say \"hi\"", &true);
        assert_eq!(quoted.into_value().unwrap(), json!({"say \"hi\"": true}));
        // More names than hash bits: some collide, none is lost.
        let many = (0..100).fold(Args::new(), |a, i| a.arg(&format!("n{i}"), &i));
        let many = many.into_value().unwrap();
        assert_eq!(many.as_object().unwrap().len(), 100);
        assert_eq!(many["n42"], 42);
        let from = Args::from_serialize(&json!({"x": 1, "y": {"z": null}})).unwrap();
        assert_eq!(
            from.into_value().unwrap(),
            json!({"x": 1, "y": {"z": null}})
        );
    }

    #[test]
    fn names_that_need_escaping_are_escaped() {
        let args = Args::new()
            .arg("plain_1", &1)
            .arg("with \"quotes\"", &2)
            .arg("back\\slash", &3)
            .arg("ünïcode", &4)
            .arg("", &5);
        assert_eq!(
            args.into_value().unwrap(),
            json!({"plain_1": 1, "with \"quotes\"": 2, "back\\slash": 3, "ünïcode": 4, "": 5})
        );
    }

    #[test]
    fn args_for_an_action_that_reads_them_carry_their_value_too() {
        let keeping = || Args {
            value: Some(Arc::new(Value::Object(Map::new()))),
            ..Args::new()
        };
        let doc = keeping().arg("b", &1).arg("a", "x").into_doc().unwrap();
        assert_eq!(doc.text().as_str(), r#"{"b":1,"a":"x"}"#);
        assert_eq!(**doc.value(), json!({"a": "x", "b": 1}));
        let again = keeping().arg("a", &1).arg("a", &2).into_doc().unwrap();
        assert_eq!(**again.value(), json!({"a": 2}));
        assert_eq!(again.text().as_str(), r#"{"a":2}"#);
        let reading = Action::builder("t")
            .policy(crate::AuditPolicy::new())
            .build()
            .unwrap();
        assert!(reading.args().value.is_some());
        let plain = Action::builder("t").build().unwrap();
        assert!(plain.args().value.is_none());
    }

    #[test]
    fn a_recycled_map_holds_exactly_the_names_bound_again() {
        let reading = || {
            Action::builder("t")
                .policy(crate::AuditPolicy::new())
                .build()
                .unwrap()
        };
        let (action, other) = (reading(), reading());
        let mut first = action.args().arg("a", &1).arg("b", "x").into_doc().unwrap();
        let kept = first.take_value().unwrap();
        let at = Arc::as_ptr(&kept);
        recycle_args(&action, kept);
        // The same names: the map, its names and its box are reused.
        let mut same = action.args().arg("a", &2).arg("b", "y").into_doc().unwrap();
        assert_eq!(**same.value(), json!({"a": 2, "b": "y"}));
        let kept = same.take_value().unwrap();
        assert_eq!(Arc::as_ptr(&kept), at);
        recycle_args(&action, kept);
        // Fewer names: the one left over is not in the value.
        let mut fewer = action.args().arg("a", &3).into_doc().unwrap();
        assert_eq!(**fewer.value(), json!({"a": 3}));
        recycle_args(&action, fewer.take_value().unwrap());
        // Another action's call starts from an empty map.
        let mut theirs = other.args().arg("z", &4).into_doc().unwrap();
        assert_eq!(**theirs.value(), json!({"z": 4}));
        // A value someone still holds is not recycled.
        let held = theirs.take_value().unwrap();
        recycle_args(&other, Arc::clone(&held));
        let fresh = other.args().arg("z", &5).into_doc().unwrap();
        assert_eq!(**fresh.value(), json!({"z": 5}));
        assert_eq!(*held, json!({"z": 4}));
    }

    #[test]
    fn an_argument_that_cannot_be_serialized_is_named_and_the_rest_kept_out() {
        let bad: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        let args = Args::new().arg("ok", &1).arg("bad", &bad).arg("later", &2);
        match args.into_json() {
            Err(GovernError::Serialization { what, reason, .. }) => {
                assert_eq!(what, "bad");
                assert!(reason.contains("key must be"), "{reason}");
            }
            other => panic!("expected a serialization error, got {other:?}"),
        }
    }
}
