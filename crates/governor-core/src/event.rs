//! Events: every step of every governed call, to subscribers, tracing and
//! the store.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::error::GovernError;
use crate::execution::ExecutionId;
use crate::json::Json;

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The type of an event. Names are the seed's (`execution.started`, ...).
        ///
        /// Every kind here is emitted. The seed also declares
        /// `checkpoint.reached` and `policy.passed` but never emits them;
        /// here a checkpoint is `state.captured` (its data names the
        /// checkpoint) and a passing policy is `policy.evaluated` with
        /// outcome `allow`, so the two are not kinds at all.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every event kind.
            pub const ALL: &'static [EventKind] = &[$(Self::$variant,)*];

            /// The dotted name, e.g. `approval.requested`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }
        }

        impl FromStr for EventKind {
            type Err = GovernError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Self::$variant),)*
                    other => Err(GovernError::Config(format!("unknown event type `{other}`"))),
                }
            }
        }
    };
}

event_kinds! {
    /// A governed call was recorded.
    ExecutionStarted => "execution.started",
    /// The action returned and every check passed.
    ExecutionCompleted => "execution.completed",
    /// The action, a hook or a post-execution policy failed.
    ExecutionFailed => "execution.failed",
    /// The caller went away before the call finished.
    ExecutionCancelled => "execution.cancelled",
    /// A pre-execution policy refused the call.
    ExecutionDenied => "execution.denied",
    /// A parked execution was resumed.
    ExecutionResumed => "execution.resumed",
    /// The kill switch held a call that was cleared to run.
    ExecutionHeld => "execution.held",
    /// A snapshot was saved.
    StateCaptured => "state.captured",
    /// A snapshot was loaded for replay or resume.
    StateRestored => "state.restored",
    /// A human decision was requested.
    ApprovalRequested => "approval.requested",
    /// A human approved.
    ApprovalGranted => "approval.granted",
    /// A human rejected.
    ApprovalRejected => "approval.rejected",
    /// Nobody decided in time.
    ApprovalTimeout => "approval.timeout",
    /// A decision gave a standing grant (data: the grant); the execution
    /// is the one whose decision gave it.
    GrantCreated => "grant.created",
    /// A standing grant was revoked (data: grant id and who revoked it).
    GrantRevoked => "grant.revoked",
    /// A policy was evaluated (data: policy, outcome, reason, shadow).
    PolicyEvaluated => "policy.evaluated",
    /// A policy warned (non-blocking failure, or a shadow-mode denial).
    PolicyFailed => "policy.failed",
    /// A policy blocked the call.
    PolicyViolated => "policy.violated",
    /// A pre-action started.
    PreActionStarted => "pre_action.started",
    /// A pre-action finished.
    PreActionCompleted => "pre_action.completed",
    /// A pre-action failed.
    PreActionFailed => "pre_action.failed",
    /// A post-action started.
    PostActionStarted => "post_action.started",
    /// A post-action finished.
    PostActionCompleted => "post_action.completed",
    /// A post-action failed.
    PostActionFailed => "post_action.failed",
    /// A user-defined event.
    Custom => "custom",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One event, in a CloudEvents-style envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, time-ordered id.
    pub id: Uuid,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The execution it belongs to.
    pub execution_id: ExecutionId,
    /// The governed action.
    pub action: Arc<str>,
    /// Type-specific payload (already redacted).
    pub data: Json,
}

impl Event {
    /// A new event happening now.
    pub fn new(kind: EventKind, execution_id: ExecutionId, action: Arc<str>, data: Json) -> Self {
        Self::at(Utc::now(), kind, execution_id, action, data)
    }

    /// A new event that happened at `time`.
    pub fn at(
        time: DateTime<Utc>,
        kind: EventKind,
        execution_id: ExecutionId,
        action: Arc<str>,
        data: Json,
    ) -> Self {
        EventRecord::at(time, kind, data).into_event(execution_id, action)
    }

    /// The event's source, constant for the envelope.
    pub fn source(&self) -> &'static str {
        "governor"
    }
}

/// An event as a store write carries it: its execution and action are
/// those of the write ([`Creation`](crate::store::Creation),
/// [`Transition`](crate::store::Transition)), so a governed call's events
/// hold no reference to the action's shared name until someone observes
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Unique, time-ordered id.
    pub id: Uuid,
    /// The event type.
    pub kind: EventKind,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// Type-specific payload (already redacted).
    pub data: Json,
}

impl EventRecord {
    /// A record of an event happening at `time`.
    pub fn at(time: DateTime<Utc>, kind: EventKind, data: Json) -> Self {
        let unix_ms = u64::try_from(time.timestamp_millis()).unwrap_or(0);
        Self {
            id: crate::ids::v7(unix_ms),
            ..Self::unstamped(time, kind, data)
        }
    }

    /// A record whose id is given when it is written (nil until then,
    /// see [`crate::ids::Stamps`]).
    pub(crate) fn unstamped(time: DateTime<Utc>, kind: EventKind, data: Json) -> Self {
        Self {
            id: Uuid::nil(),
            kind,
            time,
            data,
        }
    }

    /// The event of `execution_id`, an execution of `action`.
    pub fn into_event(self, execution_id: ExecutionId, action: Arc<str>) -> Event {
        Event {
            id: self.id,
            kind: self.kind,
            time: self.time,
            execution_id,
            action,
            data: self.data,
        }
    }
}

impl From<&Event> for EventRecord {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            time: e.time,
            data: e.data.clone(),
        }
    }
}

/// A live stream of events from [`EventBus::subscribe`].
pub struct EventStream {
    rx: broadcast::Receiver<Arc<Event>>,
    inner: Arc<Inner>,
}

impl EventStream {
    /// The next event. `Err(Lagged(n))` means `n` events were skipped
    /// because this stream fell behind; `Err(Closed)` that the bus is gone.
    pub async fn recv(&mut self) -> Result<Arc<Event>, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Result<Arc<Event>, broadcast::error::TryRecvError> {
        self.rx.try_recv()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.inner.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// Identifies a registered handler, for [`EventBus::off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

struct Slot {
    id: HandlerId,
    kind: Option<EventKind>,
    tx: mpsc::Sender<Arc<Event>>,
}

struct Inner {
    stream: broadcast::Sender<Arc<Event>>,
    slots: RwLock<Vec<Slot>>,
    slot_count: AtomicUsize,
    /// Live [`EventStream`]s.
    streams: AtomicUsize,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

/// Delivers events to handlers and streams without ever slowing down or
/// failing the governed call: each handler runs in its own task behind a
/// bounded queue (a full queue drops the event and counts it), and a
/// handler that panics is logged and keeps receiving later events.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("handlers", &self.handler_count())
            .finish()
    }
}

/// Per-handler queue length.
const HANDLER_QUEUE: usize = 4096;

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        let (stream, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Inner {
                stream,
                slots: RwLock::new(Vec::new()),
                slot_count: AtomicUsize::new(0),
                streams: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Whether anyone (handler or stream) is listening.
    pub fn has_listeners(&self) -> bool {
        // `broadcast::Sender::receiver_count` takes a lock; the streams are
        // counted here instead, so a call with nobody listening pays two
        // atomic loads per event.
        self.inner.slot_count.load(Ordering::Relaxed) > 0
            || self.inner.streams.load(Ordering::Relaxed) > 0
    }

    /// Whether an emitted event would reach anyone: a handler, a stream,
    /// or a `tracing` subscriber taking `governor::event` at debug level.
    pub(crate) fn is_observed(&self) -> bool {
        self.has_listeners() || tracing::enabled!(target: "governor::event", tracing::Level::DEBUG)
    }

    /// Publishes an event.
    pub fn emit(&self, event: Event) {
        tracing::debug!(
            target: "governor::event",
            kind = event.kind.as_str(),
            execution_id = %event.execution_id,
            action = &*event.action,
            data = event.data.as_str(),
        );
        if !self.has_listeners() {
            return;
        }
        let event = Arc::new(event);
        if self.inner.streams.load(Ordering::Relaxed) > 0 {
            let _ = self.inner.stream.send(Arc::clone(&event));
        }
        if self.inner.slot_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Ok(slots) = self.inner.slots.read() else {
            return;
        };
        for slot in slots
            .iter()
            .filter(|s| s.kind.is_none_or(|k| k == event.kind))
        {
            if slot.tx.try_send(Arc::clone(&event)).is_err() {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A live stream of every event from now on. A receiver that falls
    /// more than 4,096 events behind skips ahead (`RecvError::Lagged`).
    pub fn subscribe(&self) -> EventStream {
        self.inner.streams.fetch_add(1, Ordering::Relaxed);
        EventStream {
            rx: self.inner.stream.subscribe(),
            inner: Arc::clone(&self.inner),
        }
    }

    /// Runs `handler` for every event of `kind` (or every event, with
    /// `None`). Must be called inside a Tokio runtime.
    pub fn on<F>(
        &self,
        kind: impl Into<Option<EventKind>>,
        handler: F,
    ) -> Result<HandlerId, GovernError>
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.on_async(kind, move |event: Arc<Event>| {
            let handler = Arc::clone(&handler);
            async move { handler(&event) }
        })
    }

    /// Runs the async `handler` for every event of `kind` (or every event).
    /// Must be called inside a Tokio runtime.
    pub fn on_async<F, Fut>(
        &self,
        kind: impl Into<Option<EventKind>>,
        handler: F,
    ) -> Result<HandlerId, GovernError>
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            GovernError::Config("event handlers must be registered inside a Tokio runtime".into())
        })?;
        let id = HandlerId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, mut rx) = mpsc::channel::<Arc<Event>>(HANDLER_QUEUE);
        runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                let kind = event.kind;
                if let Err(e) = tokio::spawn(handler(event)).await {
                    tracing::warn!(target: "governor::event", handler = id.0, %kind, "event handler failed: {e}");
                }
            }
        });
        let mut slots = self
            .inner
            .slots
            .write()
            .map_err(|_| GovernError::Config("event bus poisoned".into()))?;
        slots.push(Slot {
            id,
            kind: kind.into(),
            tx,
        });
        self.inner.slot_count.store(slots.len(), Ordering::Relaxed);
        Ok(id)
    }

    /// Removes a handler; returns whether it was registered.
    pub fn off(&self, id: HandlerId) -> bool {
        let Ok(mut slots) = self.inner.slots.write() else {
            return false;
        };
        let before = slots.len();
        slots.retain(|s| s.id != id);
        self.inner.slot_count.store(slots.len(), Ordering::Relaxed);
        slots.len() != before
    }

    /// Number of registered handlers.
    pub fn handler_count(&self) -> usize {
        self.inner.slot_count.load(Ordering::Relaxed)
    }

    /// Events dropped because a handler's queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn event(kind: EventKind) -> Event {
        Event::new(kind, ExecutionId::new(), "a".into(), Json::null())
    }

    #[tokio::test]
    async fn handlers_get_matching_events_and_panics_are_contained() {
        let bus = EventBus::new();
        let seen = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&seen);
        bus.on(EventKind::PolicyViolated, move |e| {
            assert_eq!(e.kind, EventKind::PolicyViolated);
            s.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        bus.on(None, |_| panic!("boom")).unwrap();
        bus.emit(event(EventKind::ExecutionStarted));
        bus.emit(event(EventKind::PolicyViolated));
        bus.emit(event(EventKind::PolicyViolated));
        for _ in 0..100 {
            if seen.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn slow_handler_never_blocks_emit() {
        let bus = EventBus::new();
        bus.on_async(None, |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await
        })
        .unwrap();
        for _ in 0..(HANDLER_QUEUE + 100) {
            bus.emit(event(EventKind::Custom));
        }
        assert!(bus.dropped() >= 100);
    }

    #[tokio::test]
    async fn stream_and_off() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.emit(event(EventKind::ApprovalRequested));
        assert_eq!(rx.recv().await.unwrap().kind, EventKind::ApprovalRequested);
        let id = bus.on(None, |_| {}).unwrap();
        assert!(bus.off(id));
        assert_eq!(bus.handler_count(), 0);
    }

    #[test]
    fn names_parse_and_serialize() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), *k);
        }
        let e = event(EventKind::ExecutionStarted);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "execution.started");
        // Declared by the seed, emitted by nobody: not kinds here.
        for never in ["checkpoint.reached", "policy.passed"] {
            assert!(never.parse::<EventKind>().is_err(), "{never}");
        }
    }
}
