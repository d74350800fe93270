use std::sync::Arc;

use governor_core::Store;
use governor_sqlite::SqliteStore;

async fn fresh() -> Arc<dyn Store> {
    // Each test gets its own file; the directory lives as long as the test
    // process (leaked on purpose so the writer thread can finish).
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    Arc::new(
        SqliteStore::open(dir.path().join("conformance.db"))
            .await
            .unwrap(),
    )
}

governor_core::store_conformance!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_leave_nothing_behind() {
    governor_core::testing::failed_writes_leave_nothing_behind(fresh().await).await;
}
