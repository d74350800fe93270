//! The governor: the store, the event bus and the defaults every governed
//! action shares.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::action::{Action, ActionBuilder};
use crate::channel::ApprovalChannel;
use crate::error::{GovernError, StoreError};
use crate::event::EventBus;
use crate::execution::{Execution, ExecutionId};
use crate::redact::Redactor;
use crate::store::{MemoryStore, Store};

struct Inner {
    /// Resumable actions by name. Kept without their governor (which is
    /// this one) so that the registry does not keep itself alive.
    actions: RwLock<HashMap<Arc<str>, Action>>,
    /// How each action built on this governor reads to approvers, resumable
    /// or not (notifications and pages render requests with it).
    displays: RwLock<HashMap<Arc<str>, Arc<crate::Display>>>,
    store: Arc<dyn Store>,
    /// Where notifications go (`None`: nowhere, none are written).
    delivery: Option<crate::deliver::Delivery>,
    events: EventBus,
    redactor: Redactor,
    capture_state: bool,
    resume_lease: std::time::Duration,
    instance: String,
    pauses: crate::pause::PauseCache,
    seal_key: Option<crate::seal::SealKey>,
    link_key: Option<crate::decide::links::LinkKey>,
}

/// Owns the store and the event bus; governed actions run through it.
/// Cheap to clone.
#[derive(Clone)]
pub struct Governor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Governor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor")
            .field("capture_state", &self.inner.capture_state)
            .field("redacted_fields", &self.inner.redactor.fields())
            .finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<Governor> = OnceLock::new();

impl Governor {
    /// Starts configuring a governor.
    pub fn builder() -> GovernorBuilder {
        GovernorBuilder::default()
    }

    /// The process-wide governor used by `#[govern]` without a
    /// `governor = ...` argument: the one installed with
    /// [`set_global`](Self::set_global), or else a [`MemoryStore`] one
    /// created on first use.
    pub fn global() -> &'static Governor {
        GLOBAL.get_or_init(|| {
            Governor::builder()
                .store(MemoryStore::new())
                .build_unchecked()
        })
    }

    /// Installs the process-wide governor. Fails (returning it) if one was
    /// installed or already used.
    pub fn set_global(governor: Governor) -> Result<(), Governor> {
        GLOBAL.set(governor)
    }

    /// Starts building a governed action named `name`.
    pub fn action(&self, name: impl Into<String>) -> ActionBuilder {
        ActionBuilder::new(name).governor(self.clone())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Fields redacted in every action, in addition to each action's own.
    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    /// Whether actions capture snapshots unless they say otherwise.
    pub fn capture_state(&self) -> bool {
        self.inner.capture_state
    }

    /// How long a resumed run's lease lasts between renewals; a runner that
    /// dies stops renewing and its work is taken over after this long.
    pub fn resume_lease(&self) -> std::time::Duration {
        self.inner.resume_lease
    }

    pub(crate) fn pause_cache(&self) -> &crate::pause::PauseCache {
        &self.inner.pauses
    }

    /// This governor's identity as a lease owner.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Registers a resumable action under its name (replacing one with the
    /// same name). [`ActionBuilder::resumable`] does this on build.
    pub fn register(&self, action: &Action) {
        let mut detached = action.clone();
        detached.governor = crate::action::GovernorRef::Global;
        if let Ok(mut actions) = self.inner.actions.write() {
            actions.insert(Arc::clone(&action.name), detached);
        }
    }

    /// The resumable action registered under `name`: built explicitly, or
    /// a `#[govern]` function linked into this program (built now if no
    /// call has built it yet).
    pub(crate) fn registered(&self, name: &str) -> Option<Action> {
        if let Some(action) = self.registered_now(name) {
            return Some(action);
        }
        crate::macro_support::register_linked(name);
        self.registered_now(name)
    }

    /// The action registered under `name` as run elsewhere (see
    /// [`ActionBuilder::external`](crate::ActionBuilder::external)), for
    /// servers that admit calls by name.
    pub fn external_action(&self, name: &str) -> Option<Action> {
        let mut action = self.registered(name).filter(|a| a.external.is_some())?;
        // Registered copies are detached (no cycle through the registry);
        // calls through this one must record on this governor.
        action.governor = crate::action::GovernorRef::Fixed(self.clone());
        Some(action)
    }

    /// How the registered action `name` reads to an approver, if it
    /// declares it ([`ActionBuilder::display`](crate::ActionBuilder::display)).
    pub fn action_display(&self, name: &str) -> Option<Arc<crate::Display>> {
        self.registered_now(name)
            .and_then(|a| a.display)
            .or_else(|| self.inner.displays.read().ok()?.get(name).cloned())
    }

    /// Remembers how the action `name` reads, for actions that are not
    /// registered (not resumable here).
    pub(crate) fn remember_display(&self, name: &Arc<str>, display: &Arc<crate::Display>) {
        if let Ok(mut displays) = self.inner.displays.write() {
            displays.insert(Arc::clone(name), Arc::clone(display));
        }
    }

    /// The key sealed arguments are kept with, if configured.
    pub(crate) fn seal_key(&self) -> Option<&crate::seal::SealKey> {
        self.inner.seal_key.as_ref()
    }

    /// Every action registered with this governor (resumable and external
    /// ones), by name.
    pub fn registered_actions(&self) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .inner
            .actions
            .read()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default();
        actions.sort_by(|a, b| a.name().cmp(b.name()));
        actions
    }

    /// The names of the actions this governor can run: the registered
    /// ones and the `#[govern]` functions linked into the program (which
    /// register on first use).
    pub(crate) fn runnable_actions(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .actions
            .read()
            .map(|a| a.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        names.extend(crate::macro_support::linked_names().map(str::to_owned));
        names.sort_unstable();
        names.dedup();
        names
    }

    fn registered_now(&self, name: &str) -> Option<Action> {
        self.inner.actions.read().ok()?.get(name).cloned()
    }

    /// Where this governor's notifications go, if anywhere.
    pub(crate) fn delivery(&self) -> Option<&crate::deliver::Delivery> {
        self.inner.delivery.as_ref()
    }

    /// The key approval links are signed with, if any.
    pub(crate) fn link_key(&self) -> Option<&crate::decide::links::LinkKey> {
        self.inner.link_key.as_ref()
    }

    /// Looks an execution up.
    pub async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        self.inner.store.execution(id).await
    }
}

/// Configures a [`Governor`].
#[must_use]
pub struct GovernorBuilder {
    store: Option<Arc<dyn Store>>,
    targets: Vec<Arc<dyn crate::deliver::DeliveryTarget>>,
    retry: crate::deliver::RetryPolicy,
    deliver_automatically: bool,
    events: Option<EventBus>,
    redactor: Redactor,
    capture_state: bool,
    resume_lease: std::time::Duration,
    pause_refresh: std::time::Duration,
    seal_key: Option<crate::seal::SealKey>,
    link_key: Option<crate::decide::links::LinkKey>,
}

impl Default for GovernorBuilder {
    fn default() -> Self {
        Self {
            store: None,
            targets: Vec::new(),
            retry: crate::deliver::RetryPolicy::default(),
            deliver_automatically: true,
            events: None,
            redactor: Redactor::default(),
            capture_state: true,
            resume_lease: std::time::Duration::from_secs(60),
            pause_refresh: std::time::Duration::from_secs(1),
            seal_key: None,
            link_key: None,
        }
    }
}

impl GovernorBuilder {
    /// The store to record executions in (default: a [`MemoryStore`]).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store shared with other components.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a channel told about every request that waits for people
    /// (new, a stage further, or escalated), through the outbox: it hears
    /// of each at least once, retried if it fails.
    pub fn channel(mut self, channel: impl ApprovalChannel) -> Self {
        self.targets
            .push(Arc::new(crate::deliver::ChannelTarget::new(Arc::new(
                channel,
            ))));
        self
    }

    /// Adds a delivery target (email, chat, webhook): it is told about
    /// requests and decisions through the outbox (see
    /// [`DeliveryTarget`](crate::DeliveryTarget)).
    pub fn deliver_to(mut self, target: impl crate::deliver::DeliveryTarget) -> Self {
        self.targets.push(Arc::new(target));
        self
    }

    /// Adds a delivery target shared with other owners.
    pub fn deliver_to_shared(mut self, target: Arc<dyn crate::deliver::DeliveryTarget>) -> Self {
        self.targets.push(target);
        self
    }

    /// Whether this governor delivers its outbox by itself, starting on
    /// the first write that carries notifications (default yes). Off, it
    /// only writes notifications: some other process delivers them, or
    /// this one when told to ([`Governor::spawn_delivery`]).
    pub fn deliver_automatically(mut self, yes: bool) -> Self {
        self.deliver_automatically = yes;
        self
    }

    /// How failed deliveries are retried (default: [`RetryPolicy::default`](crate::RetryPolicy::default)).
    pub fn retry_policy(mut self, policy: crate::deliver::RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// An event bus shared with other governors.
    pub fn events(mut self, events: EventBus) -> Self {
        self.events = Some(events);
        self
    }

    /// Field names redacted from every action's records.
    pub fn sensitive_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.redactor.extend(fields);
        self
    }

    /// Makes `field` sensitive in every action's records, keeping the
    /// part `mask` shows.
    pub fn mask(mut self, field: impl AsRef<str>, mask: crate::Mask) -> Self {
        self.redactor.mask(field, mask);
        self
    }

    /// How long a resumed run's lease lasts between renewals (default 60 s):
    /// work of a runner that died is taken over after this long.
    pub fn resume_lease(mut self, lease: std::time::Duration) -> Self {
        self.resume_lease = lease;
        self
    }

    /// How often this instance re-reads the store's pauses (default 1 s):
    /// the longest a pause made by another instance takes to apply here.
    pub fn pause_refresh(mut self, every: std::time::Duration) -> Self {
        self.pause_refresh = every;
        self
    }

    /// Keeps the arguments of parked calls whose sensitive fields are
    /// redacted sealed with `key`, so they can run once approved (on any
    /// instance configured with the same key). Without a key such calls
    /// cannot be resumed (`ResumeError::RedactedInputs`).
    pub fn seal_key(mut self, key: crate::seal::SealKey) -> Self {
        self.seal_key = Some(key);
        self
    }

    /// Signs one-time approval links with `key`, so that delivery targets
    /// (email) can send approvers links that decide after a confirmation
    /// ([`Governor::decide_by_link`]). Every instance serving the links'
    /// page needs the same key.
    pub fn link_key(mut self, key: crate::decide::links::LinkKey) -> Self {
        self.link_key = Some(key);
        self
    }

    /// Whether snapshots are captured by default (default: true).
    pub fn capture_state(mut self, capture: bool) -> Self {
        self.capture_state = capture;
        self
    }

    /// Builds the governor.
    pub fn build(self) -> Result<Governor, GovernError> {
        Ok(self.build_unchecked())
    }

    fn build_unchecked(self) -> Governor {
        Governor {
            inner: Arc::new(Inner {
                actions: RwLock::new(HashMap::new()),
                displays: RwLock::new(HashMap::new()),
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                delivery: (!self.targets.is_empty()).then(|| {
                    crate::deliver::Delivery::new(
                        self.targets,
                        self.retry,
                        self.deliver_automatically,
                    )
                }),
                events: self.events.unwrap_or_default(),
                redactor: self.redactor,
                capture_state: self.capture_state,
                resume_lease: self.resume_lease,
                instance: format!("governor-{}", uuid::Uuid::now_v7()),
                pauses: crate::pause::PauseCache::new(self.pause_refresh),
                seal_key: self.seal_key,
                link_key: self.link_key,
            }),
        }
    }
}
