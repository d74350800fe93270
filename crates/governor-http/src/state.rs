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
}

impl ApiState {
    /// State for `governor`, accepting `keys`.
    pub fn new(governor: Governor, keys: ApiKeys) -> Self {
        Self {
            governor,
            keys: Arc::new(keys),
            metrics: Arc::default(),
        }
    }

    /// The governor behind the API.
    pub fn governor(&self) -> &Governor {
        &self.governor
    }
}
