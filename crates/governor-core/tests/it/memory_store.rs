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
    for (i, id) in finished.iter().enumerate() {
        let kept = store.execution(*id).await.unwrap().is_some();
        assert_eq!(kept, i >= 3, "finished execution {i}");
    }
}

/// Writes a denied execution with its audit record.
async fn denied_call(store: &MemoryStore) {
    let e = Execution::new("a".into(), Arc::new(Principal::new("p")), Json::null());
    let mut c = Creation::new(e.clone());
    c.execution.status = ExecutionStatus::Denied;
    c.audit = Some(governor_core::AuditRecord {
        execution_id: e.id,
        action: "a".into(),
        principal: "p".into(),
        tenant: None,
        status: ExecutionStatus::Denied,
        at: e.created_at,
        decisions: Default::default(),
        inputs: None,
        output: None,
        failure: None,
        tags: Default::default(),
        approved_digest: None,
    });
    store.create(&c).await.unwrap();
}

#[tokio::test]
async fn evicted_audit_entries_leave_a_verifiable_window() {
    let store = MemoryStore::with_capacity(2);
    for _ in 0..5 {
        denied_call(&store).await;
    }
    let window = store.audit_entries(0, 10).await.unwrap();
    assert_eq!(window.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    // Entries 1-3 left before anyone read the log, unhashed.
    assert_eq!(window[0].prev_hash, governor_core::EVICTED_UNREAD_HASH);
    assert_eq!(governor_core::verify_chain(&window), Ok(2));
}

#[tokio::test]
async fn entries_read_before_eviction_keep_the_chain_unbroken() {
    let store = MemoryStore::with_capacity(3);
    for _ in 0..3 {
        denied_call(&store).await;
    }
    // Hashed when read; a second read and a paged read see the same.
    let first = store.audit_entries(0, 10).await.unwrap();
    assert_eq!(first[0].prev_hash, governor_core::GENESIS_HASH);
    assert_eq!(store.audit_entries(0, 10).await.unwrap(), first);
    assert_eq!(store.audit_entries(1, 1).await.unwrap(), first[1..2]);
    for _ in 0..2 {
        denied_call(&store).await;
    }
    let window = store.audit_entries(0, 10).await.unwrap();
    assert_eq!(
        window.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(window[0], first[2]);
    let whole: Vec<_> = first.iter().chain(&window[1..]).collect();
    assert_eq!(governor_core::verify_chain(whole), Ok(5));
}

/// `n` denied calls on each of four threads of their own.
fn denied_calls_on_four_threads(store: &Arc<MemoryStore>, n: usize) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for _ in 0..n {
                        denied_call(&store).await;
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Executions made on four threads land in four shards; the store reads
/// as one: each is found, listings are newest first across the shards,
/// and the audit log is one gapless, verifiable chain.
#[test]
fn writes_from_several_threads_read_as_one_store() {
    let store = Arc::new(MemoryStore::with_capacity(1_000));
    denied_calls_on_four_threads(&store, 50);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(store.len(), 200);
        let listed = store
            .executions(&governor_core::ExecutionQuery {
                limit: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 200);
        assert!(listed.windows(2).all(|w| w[0].id > w[1].id));
        for e in &listed {
            assert!(store.execution(e.id).await.unwrap().is_some());
        }
        let log = store.audit_entries(0, 500).await.unwrap();
        assert_eq!(
            log.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=200).collect::<Vec<_>>()
        );
        assert_eq!(governor_core::verify_chain(&log), Ok(200));
        // Paged reads give the same entries.
        assert_eq!(store.audit_entries(150, 10).await.unwrap(), log[150..160]);
    });
}

/// With four shards in use, each keeps a quarter of the capacity: the
/// store never holds more than its capacity of finished executions, and
/// the audit window stays one verifiable chain.
#[test]
fn shards_split_the_capacity() {
    let store = Arc::new(MemoryStore::with_capacity(40));
    denied_calls_on_four_threads(&store, 100);
    assert!(store.len() <= 40, "{} kept", store.len());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = rt.block_on(store.audit_entries(0, 100)).unwrap();
    assert!(!log.is_empty() && log.len() <= 40);
    assert_eq!(log.last().unwrap().seq, 400);
    assert!(log.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(governor_core::verify_chain(&log), Ok(log.len() as u64));
}

/// Entries are numbered when the log is read: numbers and hashes given
/// by one read never change, and what four threads write after it
/// continues the same chain.
#[test]
fn reads_between_writes_from_several_threads_continue_one_chain() {
    let store = Arc::new(MemoryStore::with_capacity(1_000));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut whole = Vec::new();
    for round in 1..=3u64 {
        denied_calls_on_four_threads(&store, 10);
        let read = rt.block_on(store.audit_entries(0, 1_000)).unwrap();
        assert_eq!(read.len() as u64, 40 * round);
        // What an earlier read returned reads back the same.
        assert_eq!(read[..whole.len()], whole[..]);
        whole = read;
    }
    assert_eq!(
        whole.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>()
    );
    assert_eq!(governor_core::verify_chain(&whole), Ok(120));
}
