//! Rate limiting: at most `max_calls` in any `window` (a sliding window,
//! the seed's meaning), or with `burst` set a smooth rate (GCRA). O(1) per
//! check, bounded keys, monotonic time.
//!
//! By default each process keeps its own counters. Several instances share
//! one limit through a [`RateLimitBackend`] (Redis or PostgreSQL, in their
//! crates): the same algorithm, run atomically where the counters live.

use std::borrow::Cow;
mod local;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Decision, Denial, Policy, PolicyContext, PolicyKind};
use crate::per_thread::PerThread;

type KeyFn = Arc<dyn Fn(&PolicyContext<'_>) -> String + Send + Sync>;

/// Which calls share one limit.
#[derive(Clone, Default)]
pub enum RateLimitScope {
    /// One limit for every call the policy governs.
    #[default]
    Global,
    /// One limit per principal id (the seed's `per_user`).
    PerPrincipal,
    /// One limit per action name.
    PerAction,
    /// One limit per principal and action.
    PerPrincipalAndAction,
    /// One limit per key computed from the call.
    Custom(KeyFn),
}

impl std::fmt::Debug for RateLimitScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Global => "Global",
            Self::PerPrincipal => "PerPrincipal",
            Self::PerAction => "PerAction",
            Self::PerPrincipalAndAction => "PerPrincipalAndAction",
            Self::Custom(_) => "Custom",
        })
    }
}

/// One limit, as a backend applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most `max_calls` calls in any `window` (a sliding window: a call
    /// is admitted when fewer than `max_calls` were admitted in the
    /// `window` before it).
    Window {
        /// Calls allowed in any window.
        max_calls: u32,
        /// The window.
        window: Duration,
    },
    /// The generic cell rate algorithm: a call is admitted when its key's
    /// theoretical arrival time is at most `tolerance` ahead of now, and
    /// admitting it moves that time `interval` on.
    Gcra {
        /// Time between calls at the sustained rate (`window / max_calls`).
        interval: Duration,
        /// How far ahead the arrival time may run: `interval * (burst - 1)`.
        tolerance: Duration,
    },
}

impl Limit {
    /// Window limits up to this many calls keep each call's time; larger
    /// ones count calls in [`Limit::WINDOW_SLOTS`] slots per window, so a
    /// key holds a bounded number of counters however high the limit.
    pub const EXACT_WINDOW_CALLS: u32 = 1_024;

    /// Slots per window of a window limit above
    /// [`Limit::EXACT_WINDOW_CALLS`]. A backend counts the calls of the
    /// last `WINDOW_SLOTS + 1` slots (each `window / WINDOW_SLOTS` long,
    /// rounded up), so it never admits more than `max_calls` in any window
    /// and refuses a call at most one slot early.
    pub const WINDOW_SLOTS: u32 = 64;

    /// Whether this is a window limit counted in slots.
    pub fn counts_in_slots(&self) -> bool {
        matches!(self, Self::Window { max_calls, .. } if *max_calls > Self::EXACT_WINDOW_CALLS)
    }
}

/// What a backend says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The call may go ahead; its cell is taken.
    Admitted,
    /// The limit is reached; try again after this long.
    Limited {
        /// When a cell frees up.
        retry_after: Duration,
    },
}

/// A shared backend could not answer.
#[derive(Debug, thiserror::Error)]
#[error("rate limit backend {backend} failed: {message}")]
pub struct RateLimitBackendError {
    /// The backend (`redis`, `postgres`, ...).
    pub backend: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Counters shared by every instance that uses the same backend.
#[async_trait]
pub trait RateLimitBackend: Send + Sync + 'static {
    /// The backend's name, for errors and metrics.
    fn name(&self) -> &'static str;

    /// Takes a cell of `limit` for `key`, atomically, with the backend's
    /// clock (instances' clocks need not agree).
    async fn acquire(&self, key: &str, limit: Limit) -> Result<Admission, RateLimitBackendError>;

    /// Gives back a cell taken for a call that did not go ahead.
    async fn release(&self, key: &str, limit: Limit) -> Result<(), RateLimitBackendError>;
}

/// What a shared limit does when its backend cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBackendError {
    /// Deny the call with an error naming the backend (the default: a
    /// limit that cannot be checked is not silently lifted).
    #[default]
    Deny,
    /// Let the call through and log the failure.
    Allow,
}

/// Limits how often calls happen.
///
/// By default at most `max_calls` calls pass in any `window` (a sliding
/// window). Up to 1,024 calls per window, each call's time is kept; above
/// that, calls are counted in 64 slots per window, so a key never holds
/// more than 65 counters: such a limit may refuse a call up to one slot
/// (1/64 of the window) early, and never admits more than `max_calls` in
/// any window. With [`burst`](Self::burst) set, the limit is a smooth rate
/// instead (GCRA): `max_calls` per `window` sustained, up to `burst` at
/// once. Each check is O(1); the number
/// of tracked keys is capped (`max_keys`, default 100,000): keys whose
/// budget has fully recovered are dropped first, and if every tracked key
/// is still active a call with a new key is denied rather than letting an
/// attacker reset limits by rotating keys. A call that a later policy
/// denies gives its quota back.
///
/// Callers on several threads sharing a high limit (one counted in slots,
/// at least 65,536 per window) take a few cells at a time into a credit of
/// their thread's, spent without touching the shared counters (their cache
/// lines otherwise pass between the cores at every call). A credit only
/// counts in the slot it was taken in, so the limit is never exceeded; what
/// threads leave unspent when a slot ends is refused, at most 1/4,096 of
/// the limit per slot.
#[derive(Clone)]
pub struct RateLimitPolicy {
    name: String,
    max_calls: u32,
    window: Duration,
    burst: Option<u32>,
    scope: RateLimitScope,
    max_keys: usize,
    base: Instant,
    state: Arc<Mutex<local::State>>,
    /// Per thread: cells taken ahead, per key (see [`Self::batch`]).
    credits: Arc<PerThread<Mutex<Credits>>>,
    shared: Option<Arc<dyn RateLimitBackend>>,
    on_error: OnBackendError,
}

/// One thread's credits, by key: a short list searched in order (a
/// thread calls for few keys at a time; hashing a key cost more than the
/// rest of the check).
type Credits = Vec<(Box<str>, Credit)>;

/// Cells a thread took ahead for one key, valid in the slot they were
/// counted in.
#[derive(Debug, Clone, Copy)]
struct Credit {
    slot: u64,
    left: u32,
}

impl Credit {
    /// Spends a cell, if one is left from `slot`.
    fn spend(&mut self, slot: u64) -> bool {
        let spent = self.slot == slot && self.left > 0;
        self.left -= u32::from(spent);
        spent
    }

    /// Takes a cell back, if the credit is `slot`'s.
    fn give_back(&mut self, slot: u64) -> bool {
        let kept = self.slot == slot;
        self.left += u32::from(kept);
        kept
    }
}

/// Keys a thread keeps credits for; past this its oldest key's credit is
/// dropped (refused early, never admitted beyond the limit).
const CREDIT_KEYS: usize = 16;

impl RateLimitPolicy {
    /// `max_calls` per `window`, one global limit.
    pub fn new(max_calls: u32, window: Duration) -> Self {
        Self {
            name: "RateLimitPolicy".into(),
            max_calls,
            window,
            burst: None,
            scope: RateLimitScope::Global,
            max_keys: 100_000,
            base: Instant::now(),
            state: Arc::new(Mutex::new(local::State::default())),
            credits: Arc::default(),
            shared: None,
            on_error: OnBackendError::Deny,
        }
    }

    /// Keeps the counters in `backend`, shared with every instance using
    /// it, instead of in this process. Keys are prefixed with the policy's
    /// name, so give policies sharing a backend distinct names.
    #[must_use]
    pub fn shared(mut self, backend: Arc<dyn RateLimitBackend>) -> Self {
        self.shared = Some(backend);
        self
    }

    /// What a shared limit does when its backend is down (default: deny).
    #[must_use]
    pub fn on_backend_error(mut self, on_error: OnBackendError) -> Self {
        self.on_error = on_error;
        self
    }

    /// The limit this policy applies.
    pub fn limit(&self) -> Limit {
        match self.burst {
            None => Limit::Window {
                max_calls: self.max_calls,
                window: self.window,
            },
            Some(burst) => {
                let t = self.interval();
                Limit::Gcra {
                    interval: Duration::from_nanos(t),
                    tolerance: Duration::from_nanos(t.saturating_mul(u64::from(burst.max(1) - 1))),
                }
            }
        }
    }

    /// Sets the policy's name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the limit a smooth rate (GCRA) that lets up to `burst` calls
    /// arrive at once, instead of a window of `max_calls`.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst.max(1));
        self
    }

    /// Which calls share a limit.
    #[must_use]
    pub fn scope(mut self, scope: RateLimitScope) -> Self {
        self.scope = scope;
        self
    }

    /// One limit per principal.
    #[must_use]
    pub fn per_principal(self) -> Self {
        self.scope(RateLimitScope::PerPrincipal)
    }

    /// One limit per key computed by `f`.
    #[must_use]
    pub fn key_fn<F>(self, f: F) -> Self
    where
        F: Fn(&PolicyContext<'_>) -> String + Send + Sync + 'static,
    {
        self.scope(RateLimitScope::Custom(Arc::new(f)))
    }

    /// Caps the number of tracked keys.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// Number of keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.state.lock().map(|s| s.keys()).unwrap_or(0)
    }

    fn key<'c>(&self, ctx: &PolicyContext<'c>) -> Cow<'c, str> {
        match &self.scope {
            RateLimitScope::Global => Cow::Borrowed(""),
            RateLimitScope::PerPrincipal => Cow::Borrowed(ctx.principal.id.as_str()),
            RateLimitScope::PerAction => Cow::Borrowed(ctx.action),
            RateLimitScope::PerPrincipalAndAction => {
                Cow::Owned(format!("{}\u{1f}{}", ctx.principal.id, ctx.action))
            }
            RateLimitScope::Custom(f) => Cow::Owned(f(ctx)),
        }
    }

    /// Nanoseconds between two admitted calls at the sustained rate.
    fn interval(&self) -> u64 {
        let window = u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX);
        window / u64::from(self.max_calls.max(1))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn deny(&self, key: &str, retry_after: Duration) -> Decision {
        let scope = if key.is_empty() {
            String::new()
        } else {
            format!(" for `{key}`")
        };
        Decision::Deny(
            Denial::new(format!(
                "rate limit exceeded{scope}: {} calls per {:.0}s",
                self.max_calls,
                self.window.as_secs_f64()
            ))
            .rule("max_calls")
            .retry_after(retry_after),
        )
    }
}

impl RateLimitPolicy {
    fn shared_key(&self, key: &str) -> String {
        format!("{}:{key}", self.name)
    }

    /// The decision of the in-process limiter (and of a limit of zero,
    /// which needs no counter).
    fn evaluate_local(&self, ctx: &PolicyContext<'_>) -> Decision {
        if self.max_calls == 0 {
            return self.deny("", self.window);
        }
        let key = self.key(ctx);
        let now = self.now();
        let batch = self.batch();
        let slot = self.slot_of(now);
        if batch > 1 && self.with_credit(&key, |c| c.spend(slot)) {
            return Decision::Allow;
        }
        let Ok(mut state) = self.state.lock() else {
            return Decision::deny("rate limiter state is unavailable");
        };
        match state.acquire(&key, now, self.limit(), self.max_keys, batch) {
            Ok(taken) => {
                drop(state);
                if taken > 1 {
                    self.keep_credit(
                        &key,
                        Credit {
                            slot,
                            left: taken - 1,
                        },
                    );
                }
                Decision::Allow
            }
            Err(local::Refusal::Limited(wait)) => self.deny(&key, Duration::from_nanos(wait)),
            Err(local::Refusal::Full) => Decision::Deny(
                Denial::new("rate limiter is tracking its maximum number of keys")
                    .rule("max_keys")
                    .retry_after(Duration::from_nanos(self.interval())),
            ),
        }
    }

    /// Cells a thread takes at once from a window counted in slots: few
    /// enough that what all threads leave unspent in a slot is at most
    /// 1/4,096 of the limit (16 thread shards), one below 65,536 calls per
    /// window.
    fn batch(&self) -> u32 {
        match self.limit() {
            l @ Limit::Window { max_calls, .. } if l.counts_in_slots() => {
                (max_calls / (Limit::WINDOW_SLOTS * 1_024)).clamp(1, 64)
            }
            _ => 1,
        }
    }

    /// The slot of the window `now` falls in.
    fn slot_of(&self, now: u64) -> u64 {
        now / local::slot_width(u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX))
    }

    /// This thread's credits.
    fn credits(&self) -> Option<std::sync::MutexGuard<'_, Credits>> {
        self.credits.get(Mutex::default).lock().ok()
    }

    /// `f` on this thread's credit for `key`; `false` without one.
    fn with_credit(&self, key: &str, f: impl FnOnce(&mut Credit) -> bool) -> bool {
        let Some(mut credits) = self.credits() else {
            return false;
        };
        credits
            .iter_mut()
            .find(|(k, _)| **k == *key)
            .is_some_and(|(_, c)| f(c))
    }

    fn keep_credit(&self, key: &str, credit: Credit) {
        let Some(mut credits) = self.credits() else {
            return;
        };
        if let Some((_, c)) = credits.iter_mut().find(|(k, _)| **k == *key) {
            *c = credit;
            return;
        }
        if credits.len() >= CREDIT_KEYS {
            credits.remove(0);
        }
        credits.push((key.into(), credit));
    }

    async fn evaluate_shared(&self, shared: &dyn RateLimitBackend, key: &str) -> Decision {
        match shared.acquire(&self.shared_key(key), self.limit()).await {
            Ok(Admission::Admitted) => Decision::Allow,
            Ok(Admission::Limited { retry_after }) => self.deny(key, retry_after),
            Err(e) if self.on_error == OnBackendError::Allow => {
                tracing::warn!(policy = %self.name, error = %e, "rate limit backend down; allowing (on_backend_error: allow)");
                Decision::Allow
            }
            Err(e) => Decision::Deny(
                Denial::new(format!("rate limit cannot be checked: {e}"))
                    .rule("backend_unavailable"),
            ),
        }
    }

    /// Gives the cell back in the background: `release` cannot wait.
    fn release_shared(&self, shared: &Arc<dyn RateLimitBackend>, key: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (backend, key, limit) = (Arc::clone(shared), self.shared_key(key), self.limit());
        runtime.spawn(async move {
            if let Err(e) = backend.release(&key, limit).await {
                tracing::warn!(error = %e, "rate limit cell not given back");
            }
        });
    }
}

#[async_trait]
impl Policy for RateLimitPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> PolicyKind {
        PolicyKind::RateLimit
    }

    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        match &self.shared {
            Some(shared) if self.max_calls > 0 => {
                self.evaluate_shared(&**shared, &self.key(ctx)).await
            }
            _ => self.evaluate_local(ctx),
        }
    }

    fn evaluate_now(&self, ctx: &PolicyContext<'_>) -> Option<Decision> {
        match &self.shared {
            Some(_) if self.max_calls > 0 => None,
            _ => Some(self.evaluate_local(ctx)),
        }
    }

    fn release(&self, ctx: &PolicyContext<'_>) {
        let key = self.key(ctx);
        if let Some(shared) = &self.shared {
            return self.release_shared(shared, &key);
        }
        // A credit of the current slot takes the cell back (it was
        // counted there).
        if self.batch() > 1 && self.with_credit(&key, |c| c.give_back(self.slot_of(self.now()))) {
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            state.release(&key, self.limit());
        }
    }
    fn fingerprint(&self) -> String {
        format!(
            "{} per {:?} burst {:?} {:?} {}",
            self.max_calls,
            self.window,
            self.burst,
            self.scope,
            self.shared.as_ref().map_or("local", |s| s.name())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use crate::policy::test_support::ctx;
    use serde_json::json;

    async fn admitted(p: &RateLimitPolicy, who: &Principal, n: usize) -> usize {
        let input = json!({});
        let mut ok = 0;
        for _ in 0..n {
            if p.evaluate(&ctx(&input, who)).await == Decision::Allow {
                ok += 1;
            }
        }
        ok
    }

    /// Four threads sharing a limit high enough for credits (two cells at
    /// a time) are admitted exactly the limit between them: credits are
    /// counted when taken, and spent before the shared counter refuses.
    #[test]
    fn threads_sharing_a_high_limit_never_pass_it() {
        let max = Limit::WINDOW_SLOTS * 1_024 * 2;
        let p = RateLimitPolicy::new(max, Duration::from_secs(3_600));
        assert_eq!(p.batch(), 2);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let (who, input) = (Principal::new("a"), json!({}));
                    let allowed =
                        |_: &u32| p.evaluate_now(&ctx(&input, &who)) == Some(Decision::Allow);
                    (0..50_000u32).filter(allowed).count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let max = max as usize;
        // At most one cell per thread is lost if a slot (56 s) ended
        // during the test.
        assert!(
            admitted <= max && admitted >= max - 4,
            "{admitted} of {max}"
        );
    }

    #[test]
    fn a_cell_given_back_is_spent_again_from_the_credit() {
        let max = Limit::WINDOW_SLOTS * 1_024 * 64;
        let p = RateLimitPolicy::new(max, Duration::from_secs(3_600));
        assert_eq!(p.batch(), 64);
        let (who, input) = (Principal::new("a"), json!({}));
        let c = ctx(&input, &who);
        assert_eq!(p.evaluate_now(&c), Some(Decision::Allow));
        // 64 counted, 63 left in this thread's credit.
        let counted = |p: &RateLimitPolicy| match p.state.lock().unwrap().logs_total("") {
            Some(n) => n,
            None => panic!("no counter"),
        };
        assert_eq!(counted(&p), 64);
        p.release(&c);
        for _ in 0..64 {
            assert_eq!(p.evaluate_now(&c), Some(Decision::Allow));
        }
        // The 64 calls after the first were credit (63 and the one given
        // back): no new cells were counted.
        assert_eq!(counted(&p), 64);
        assert_eq!(p.evaluate_now(&c), Some(Decision::Allow));
        assert_eq!(counted(&p), 128);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_calls_pass_in_any_window() {
        let p = RateLimitPolicy::new(10, Duration::from_secs(60));
        let who = Principal::new("a");
        assert_eq!(admitted(&p, &who, 15).await, 10);
        let input = json!({});
        let Decision::Deny(d) = p.evaluate(&ctx(&input, &who)).await else {
            panic!()
        };
        assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
        // Half a window on, nothing has left the window yet.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(admitted(&p, &who, 5).await, 0);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(admitted(&p, &who, 15).await, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_burst_the_limit_is_a_smooth_rate() {
        let p = RateLimitPolicy::new(10, Duration::from_secs(60)).burst(10);
        let who = Principal::new("a");
        assert_eq!(admitted(&p, &who, 15).await, 10);
        let input = json!({});
        let Decision::Deny(d) = p.evaluate(&ctx(&input, &who)).await else {
            panic!()
        };
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::from_secs(5) && retry <= Duration::from_secs(6),
            "{retry:?}"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(admitted(&p, &who, 3).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn per_principal_limits_are_independent() {
        let p = RateLimitPolicy::new(2, Duration::from_secs(60)).per_principal();
        assert_eq!(admitted(&p, &Principal::new("a"), 5).await, 2);
        assert_eq!(admitted(&p, &Principal::new("b"), 5).await, 2);
        assert_eq!(p.tracked_keys(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn release_gives_quota_back() {
        let p = RateLimitPolicy::new(1, Duration::from_secs(60));
        let who = Principal::new("a");
        let input = json!({});
        assert_eq!(p.evaluate(&ctx(&input, &who)).await, Decision::Allow);
        p.release(&ctx(&input, &who));
        assert_eq!(p.evaluate(&ctx(&input, &who)).await, Decision::Allow);
        assert!(matches!(
            p.evaluate(&ctx(&input, &who)).await,
            Decision::Deny(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn key_table_is_bounded_and_recovered_keys_are_evicted() {
        let p = RateLimitPolicy::new(1, Duration::from_secs(1))
            .per_principal()
            .max_keys(3);
        for id in ["a", "b", "c"] {
            assert_eq!(admitted(&p, &Principal::new(id), 1).await, 1);
        }
        let Decision::Deny(d) = p.evaluate(&ctx(&json!({}), &Principal::new("d"))).await else {
            panic!()
        };
        assert_eq!(d.rule.as_deref(), Some("max_keys"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(admitted(&p, &Principal::new("d"), 1).await, 1);
        assert!(p.tracked_keys() <= 3);
    }
}
