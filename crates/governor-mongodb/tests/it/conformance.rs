use std::sync::Arc;

use governor_core::Store;

async fn fresh() -> Arc<dyn Store> {
    Arc::new(crate::support::fresh_store().await)
}

governor_core::store_conformance!(fresh());
