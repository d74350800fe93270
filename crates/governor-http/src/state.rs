//! What every handler shares.

use std::sync::Arc;

use governor_core::Governor;

use crate::auth::ApiKeys;

/// The governor the API acts on and the keys it accepts.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub(crate) governor: Governor,
    pub(crate) keys: KeyRing,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The longest a submission may hold its connection for a decision.
    pub(crate) max_wait: std::time::Duration,
    /// Origins whose web pages may call the API (none by default).
    pub(crate) cors_origins: Vec<axum::http::HeaderValue>,
    /// What one request may cost.
    pub(crate) limits: crate::limits::Limits,
    /// The requests running now.
    pub(crate) in_flight: Arc<crate::limits::InFlight>,
}

impl ApiState {
    /// State for `governor`, accepting `keys`.
    pub fn new(governor: Governor, keys: ApiKeys) -> Self {
        Self {
            governor,
            keys: KeyRing::new(keys),
            metrics: Arc::default(),
            max_wait: std::time::Duration::from_secs(300),
            cors_origins: Vec::new(),
            limits: crate::limits::Limits::default(),
            in_flight: crate::limits::InFlight::new(
                crate::limits::Limits::default().max_concurrent,
            ),
        }
    }

    /// Lets web pages from these origins (e.g. `https://ops.example.com`)
    /// call the API from a browser. Without this no cross-origin request
    /// is allowed: a page elsewhere cannot approve anything.
    pub fn allow_origins<I, S>(mut self, origins: I) -> Result<Self, crate::Problem>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for origin in origins {
            let origin = origin.as_ref();
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin != "*";
            let value = axum::http::HeaderValue::from_str(origin)
                .ok()
                .filter(|_| valid)
                .ok_or_else(|| {
                    crate::Problem::bad_request(format!(
                        "`{origin}` is not an origin like `https://ops.example.com`"
                    ))
                })?;
            self.cors_origins.push(value);
        }
        Ok(self)
    }

    /// Caps how long `POST /govern/executions` holds a connection for an
    /// approval decision (`wait_seconds`); 300 s unless set.
    pub fn max_wait(mut self, max: std::time::Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// Sets what one request may cost (body, URI, headers, time, and how
    /// many run at once).
    pub fn limits(mut self, limits: crate::limits::Limits) -> Self {
        self.in_flight = crate::limits::InFlight::new(limits.max_concurrent);
        self.limits = limits;
        self
    }

    /// A handle to replace the accepted keys while serving (a reloaded
    /// config): requests, and open event streams within a second, are
    /// then judged by the new keys.
    pub fn key_ring(&self) -> KeyRing {
        self.keys.clone()
    }

    /// The governor behind the API.
    pub fn governor(&self) -> &Governor {
        &self.governor
    }
}

/// The keys a server accepts, replaceable while it serves.
#[derive(Debug, Clone)]
pub struct KeyRing(Arc<std::sync::RwLock<Arc<ApiKeys>>>);

impl KeyRing {
    fn new(keys: ApiKeys) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(keys))))
    }

    /// The keys in force now.
    pub fn current(&self) -> Arc<ApiKeys> {
        match self.0.read() {
            Ok(keys) => Arc::clone(&keys),
            // A panic while replacing left the old keys: still valid.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the keys: from now on only `keys` are accepted.
    pub fn replace(&self, keys: ApiKeys) {
        let keys = Arc::new(keys);
        match self.0.write() {
            Ok(mut slot) => *slot = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }
}
