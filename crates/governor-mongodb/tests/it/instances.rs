//! Several store handles on one database behave as several instances.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor_core::*;
use governor_mongodb::{MongoOptions, MongoStore};

use crate::support::{fresh_database, url};

async fn instance(database: &str) -> Arc<MongoStore> {
    Arc::new(
        MongoStore::connect_with(&url(), MongoOptions::new().database(database))
            .await
            .unwrap(),
    )
}

fn governor(store: &Arc<MongoStore>) -> Governor {
    Governor::builder()
        .shared_store(store.clone())
        .build()
        .unwrap()
}

async fn wait_for_status(store: &MongoStore, status: ExecutionStatus) -> Execution {
    for _ in 0..500 {
        let found = store
            .executions(&ExecutionQuery {
                statuses: vec![status],
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(e) = found.into_iter().next() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no execution became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_instance_wakes_the_caller_on_another() {
    let database = fresh_database();
    let (a, b) = (instance(&database).await, instance(&database).await);
    let g = governor(&a);
    let action = g
        .action("pay")
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::from_secs(30)))
        .build()
        .unwrap();
    let caller = tokio::spawn(async move {
        let _keep = g;
        action
            .run(Args::new().arg("amount", &10), || async {
                Ok::<_, GovernError>(7u32)
            })
            .await
    });
    let parked = wait_for_status(&a, ExecutionStatus::AwaitingApproval).await;
    let decided = Instant::now();
    governor(&b)
        .approve(parked.id, &Principal::new("cfo"), None)
        .await
        .unwrap();
    assert_eq!(caller.await.unwrap().unwrap(), 7);
    let woke = decided.elapsed();
    assert!(woke < Duration::from_secs(5), "woke after {woke:?}");
    let done = b.execution(parked.id).await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_change_reaches_watchers() {
    let database = fresh_database();
    let (a, b) = (instance(&database).await, instance(&database).await);
    let mut changes = a.watch();
    // The change stream opens in the background: keep writing until one
    // of b's writes is seen through it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = Execution::new(
            "job".into(),
            Arc::new(Principal::new("agent")),
            Json::encode(&serde_json::json!({})).unwrap(),
        );
        b.create(&Creation::new(e.clone())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(500), changes.recv()).await;
        if let Ok(Ok(change)) = got {
            assert_eq!(change.id, e.id);
            assert_eq!(change.status, ExecutionStatus::Pending);
            return;
        }
        assert!(Instant::now() < deadline, "no change arrived from b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_claim_disjoint_work() {
    let database = fresh_database();
    let stores = [instance(&database).await, instance(&database).await];
    for i in 0..100 {
        let e = Execution::new(
            "job".into(),
            Arc::new(Principal::new("agent")),
            Json::encode(&serde_json::json!({ "i": i })).unwrap(),
        );
        let mut c = Creation::new(e);
        c.execution.status = ExecutionStatus::Approved;
        stores[i % 2].create(&c).await.unwrap();
    }
    let mut claimers = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for w in 0..3 {
            let store = Arc::clone(store);
            claimers.push(tokio::spawn(async move {
                let owner = format!("i{n}w{w}");
                let mut mine = Vec::new();
                let mut empty = 0;
                // A claimer can lose every candidate it read to a faster
                // one; it stops after coming back empty a few times.
                while empty < 3 {
                    let got = store
                        .claim(
                            ExecutionStatus::Approved,
                            &owner,
                            Duration::from_secs(60),
                            7,
                            None,
                        )
                        .await
                        .unwrap();
                    if got.is_empty() {
                        empty += 1;
                    }
                    mine.extend(got.into_iter().map(|e| e.id));
                }
                mine
            }));
        }
    }
    let mut seen = HashSet::new();
    for c in claimers {
        for id in c.await.unwrap() {
            assert!(seen.insert(id), "{id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_keep_one_audit_chain() {
    let database = fresh_database();
    let stores = [
        instance(&database).await,
        instance(&database).await,
        instance(&database).await,
    ];
    let mut tasks = Vec::new();
    for store in &stores {
        let g = governor(store);
        let action = Arc::new(
            g.action("chained")
                .policy(AuditPolicy::new())
                .build()
                .unwrap(),
        );
        for i in 0..40 {
            let action = Arc::clone(&action);
            tasks.push(tokio::spawn(async move {
                action
                    .run(Args::new().arg("i", &i), || async move {
                        Ok::<_, GovernError>(i)
                    })
                    .await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let entries = stores[0].audit_entries(0, 1_000).await.unwrap();
    assert_eq!(verify_chain(&entries), Ok(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_safely() {
    let database = fresh_database();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let database = database.clone();
            tokio::spawn(async move { MongoStore::migrate(&url(), &database).await.unwrap() })
        })
        .collect();
    for s in starts {
        assert!(s.await.unwrap() <= governor_mongodb::SCHEMA_VERSION);
    }
    // Opening without migrating accepts the current database and refuses
    // one nobody migrated.
    MongoStore::connect_with(
        &url(),
        MongoOptions::new()
            .database(&database)
            .migrate_on_open(false),
    )
    .await
    .unwrap();
    let err = MongoStore::connect_with(
        &url(),
        MongoOptions::new()
            .database(fresh_database())
            .migrate_on_open(false),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("governor migrate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_urls_are_refused_with_the_reason() {
    let err = MongoStore::connect_with(&url(), MongoOptions::new().database("x.y$z"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid);
    assert!(err.to_string().contains("database name"), "{err}");
    let err = MongoStore::connect("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    let err = MongoStore::connect("not a url").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_leaves_nothing_behind() {
    governor_core::testing::failed_writes_leave_nothing_behind(Arc::new(
        crate::support::fresh_store().await,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_is_refused_with_the_reason() {
    let url = std::env::var("GOVERNOR_TEST_MONGODB_STANDALONE_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27019/?directConnection=true".into());
    let err = MongoStore::connect(&url).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("replica set"), "{err}");
}
