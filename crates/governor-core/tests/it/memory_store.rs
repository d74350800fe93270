use std::sync::Arc;

use governor_core::{
    Creation, Execution, ExecutionStatus, Json, MemoryStore, Principal, StatusSet, Store,
    Transition,
};

governor_core::store_conformance!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });

#[tokio::test]
async fn evicts_oldest_finished_never_pending() {
    let store = MemoryStore::with_capacity(2);
    let pending = Execution::new("a".into(), Arc::new(Principal::new("p")), Json::null());
    store.create(&Creation::new(pending.clone())).await.unwrap();
    let mut finished = Vec::new();
    for _ in 0..5 {
        let e = Execution::new("a".into(), Arc::new(Principal::new("p")), Json::null());
        store.create(&Creation::new(e.clone())).await.unwrap();
        store
            .transition(&Transition::new(
                e.id,
                StatusSet::active(),
                ExecutionStatus::Cancelled,
            ))
            .await
            .unwrap();
        finished.push(e.id);
    }
    assert_eq!(store.len(), 3);
    assert!(store.execution(pending.id).await.unwrap().is_some());
    assert!(store.execution(finished[0]).await.unwrap().is_none());
    assert!(store.execution(finished[4]).await.unwrap().is_some());
}
