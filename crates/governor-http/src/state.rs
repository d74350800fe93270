//! What every handler shares.

use std::sync::Arc;

use governor_core::Governor;

use crate::auth::ApiKeys;

/// The governor the API acts on and the keys it accepts.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub(crate) governor: Governor,
    pub(crate) keys: Arc<ApiKeys>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The longest a submission may hold its connection for a decision.
    pub(crate) max_wait: std::time::Duration,
}

impl ApiState {
    /// State for `governor`, accepting `keys`.
    pub fn new(governor: Governor, keys: ApiKeys) -> Self {
        Self {
            governor,
            keys: Arc::new(keys),
            metrics: Arc::default(),
            max_wait: std::time::Duration::from_secs(300),
        }
    }

    /// Caps how long `POST /govern/executions` holds a connection for an
    /// approval decision (`wait_seconds`); 300 s unless set.
    pub fn max_wait(mut self, max: std::time::Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// The governor behind the API.
    pub fn governor(&self) -> &Governor {
        &self.governor
    }
}
