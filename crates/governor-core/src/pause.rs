//! The kill switch: pause one action, or all, until the pause is lifted.
//!
//! A pause lives in the store, so every instance on that store honours it
//! (each re-reads the store's pauses at most every
//! [`GovernorBuilder::pause_refresh`](crate::GovernorBuilder::pause_refresh);
//! the instance that paused knows at once). While an action is paused new
//! calls are denied ([`PauseMode::Deny`]) or held ([`PauseMode::Hold`]:
//! recorded as cleared to run, the caller gets `Pending`, and resume
//! workers run them after the lift); approved calls are held either way,
//! and resume workers leave the action alone. Pausing and lifting are
//! themselves governed actions (`governor.pause`, `governor.lift`): the
//! operator needs the `governor:pause` permission, and both are in the
//! audit log with who, what and why.

use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::action::Args;
use crate::error::{GovernError, StoreError};
use crate::governor::Governor;
use crate::policy::{AuditPolicy, AuthorizationPolicy};
use crate::principal::Principal;

/// The name of the governed action that pauses.
pub const PAUSE_ACTION: &str = "governor.pause";
/// The name of the governed action that lifts a pause.
pub const LIFT_ACTION: &str = "governor.lift";
/// The permission an operator needs to pause or lift.
pub const PAUSE_PERMISSION: &str = "governor:pause";

/// What happens to new calls of a paused action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseMode {
    /// New calls are denied with [`GovernError::Paused`].
    Deny,
    /// New calls pass their policies and are then held: recorded as
    /// approved (cleared to run), the caller gets `Pending`, and a resume
    /// worker runs them once the pause is lifted.
    Hold,
}

/// An active pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The paused action; `None` pauses every action.
    pub action: Option<String>,
    /// What happens to new calls.
    pub mode: PauseMode,
    /// Who paused.
    pub by: String,
    /// Why.
    pub reason: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

impl Pause {
    /// Whether it applies to `action`.
    pub fn covers(&self, action: &str) -> bool {
        self.action.as_deref().is_none_or(|a| a == action)
    }

    /// The store key: the action's name, or `""` for every action (action
    /// names are never empty).
    pub fn key(&self) -> &str {
        self.action.as_deref().unwrap_or("")
    }
}

/// This instance's view of the store's pauses.
pub(crate) struct PauseCache {
    pauses: RwLock<Arc<[Pause]>>,
    /// Whether any pause is active (the per-call fast path).
    any: AtomicBool,
    /// When the store was last read, in ms since the epoch; `i64::MIN`:
    /// never.
    read_at_ms: AtomicI64,
    refresh_ms: i64,
}

impl PauseCache {
    pub(crate) fn new(refresh: std::time::Duration) -> Self {
        Self {
            pauses: RwLock::new(Arc::from(Vec::new())),
            any: AtomicBool::new(false),
            read_at_ms: AtomicI64::new(i64::MIN),
            refresh_ms: i64::try_from(refresh.as_millis()).unwrap_or(i64::MAX),
        }
    }

    fn set(&self, pauses: Vec<Pause>, now_ms: i64) {
        self.any.store(!pauses.is_empty(), Ordering::Release);
        if let Ok(mut p) = self.pauses.write() {
            *p = Arc::from(pauses);
        }
        self.read_at_ms.store(now_ms, Ordering::Release);
    }

    fn find(&self, action: &str) -> Option<Pause> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let pauses = self.pauses.read().ok()?;
        pauses.iter().find(|p| p.covers(action)).cloned()
    }
}

impl Governor {
    /// The pause covering `action` now, if any. Reads the store when this
    /// instance's view is older than the refresh interval (one caller
    /// reads; the others use the view they have). A store that cannot be
    /// read keeps the last view.
    pub async fn paused(&self, action: &str) -> Option<Pause> {
        self.paused_at(action, Utc::now().timestamp_millis()).await
    }

    /// [`Self::paused`] at `now_ms` (milliseconds since the epoch).
    pub(crate) async fn paused_at(&self, action: &str, now_ms: i64) -> Option<Pause> {
        match self.cached_pause(action, now_ms) {
            Some(view) => view,
            None => Box::pin(self.refreshed_pause(action, now_ms)).await,
        }
    }

    /// The pause covering `action` in this instance's view, without
    /// waiting; `None` when the view is due for a refresh from the store.
    fn cached_pause(&self, action: &str, now_ms: i64) -> Option<Option<Pause>> {
        let cache = self.pause_cache();
        let read_at = cache.read_at_ms.load(Ordering::Acquire);
        (now_ms.saturating_sub(read_at) < cache.refresh_ms).then(|| cache.find(action))
    }

    async fn refreshed_pause(&self, action: &str, now_ms: i64) -> Option<Pause> {
        let cache = self.pause_cache();
        let read_at = cache.read_at_ms.load(Ordering::Acquire);
        if now_ms.saturating_sub(read_at) >= cache.refresh_ms
            && cache
                .read_at_ms
                .compare_exchange(read_at, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            match self.store().pauses().await {
                Ok(pauses) => cache.set(pauses, now_ms),
                Err(e) => tracing::warn!("could not read pauses; keeping the last view: {e}"),
            }
        }
        cache.find(action)
    }

    /// Every active pause, as stored.
    pub async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.store().pauses().await
    }

    /// Pauses `action` (`None`: every action) in `mode`, as `operator`,
    /// who needs the `governor:pause` permission. Recorded as a governed
    /// call of `governor.pause` (audited); effective at once here and
    /// within the refresh interval on other instances.
    pub async fn pause(
        &self,
        action: Option<&str>,
        mode: PauseMode,
        operator: &Principal,
        reason: &str,
    ) -> Result<Pause, GovernError> {
        let pause = Pause {
            action: action.map(str::to_owned),
            mode,
            by: operator.id.clone(),
            reason: reason.to_owned(),
            since: Utc::now(),
        };
        let args = Args::new()
            .arg("action", &pause.action)
            .arg("mode", &pause.mode)
            .arg("reason", &pause.reason);
        let store = Arc::clone(self.store());
        let stored = pause.clone();
        self.operator_action(PAUSE_ACTION)?
            .run_as(operator.clone(), args, || async move {
                store.put_pause(&stored).await.map_err(GovernError::Store)
            })
            .await?;
        self.reload_pauses().await;
        Ok(pause)
    }

    /// Lifts the pause on `action` (`None`: the pause of every action;
    /// pauses of single actions stay). Returns whether one was active.
    /// Held calls are then run by resume workers.
    pub async fn lift(
        &self,
        action: Option<&str>,
        operator: &Principal,
        reason: &str,
    ) -> Result<bool, GovernError> {
        let args = Args::new().arg("action", &action).arg("reason", &reason);
        let store = Arc::clone(self.store());
        let key = action.unwrap_or("").to_owned();
        let lifted = self
            .operator_action(LIFT_ACTION)?
            .run_as(operator.clone(), args, || async move {
                store.remove_pause(&key).await.map_err(GovernError::Store)
            })
            .await?;
        self.reload_pauses().await;
        Ok(lifted)
    }

    async fn reload_pauses(&self) {
        match self.store().pauses().await {
            Ok(pauses) => self
                .pause_cache()
                .set(pauses, Utc::now().timestamp_millis()),
            Err(e) => tracing::warn!("could not read pauses after a change: {e}"),
        }
    }

    /// The governed action behind pausing and lifting: only operators with
    /// the permission, always audited with its inputs, never paused.
    fn operator_action(&self, name: &str) -> Result<crate::Action, GovernError> {
        let mut builder = self
            .action(name)
            .policy(AuthorizationPolicy::new().require_permissions([PAUSE_PERMISSION]))
            .policy(
                AuditPolicy::new()
                    .log_inputs(true)
                    .compliance_tags(["SOC2"]),
            );
        builder.action.pausable = false;
        builder.build()
    }
}
