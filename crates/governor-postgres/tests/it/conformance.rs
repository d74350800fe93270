use std::sync::Arc;

use governor_core::Store;

async fn fresh() -> Arc<dyn Store> {
    Arc::new(crate::support::fresh_store().await)
}

governor_core::store_conformance!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_leave_nothing_behind() {
    governor_core::testing::failed_writes_leave_nothing_behind(fresh().await).await;
}
