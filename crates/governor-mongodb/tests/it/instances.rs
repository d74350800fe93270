//! Several store handles on one database behave as several instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use governor_core::testing::instances;
use governor_core::*;
use governor_mongodb::{MongoOptions, MongoStore};

use crate::support::{fresh_database, url};

async fn instance(database: &str) -> Arc<dyn Store> {
    Arc::new(
        MongoStore::connect_with(&url(), MongoOptions::new().database(database))
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_instance_wakes_the_caller_on_another() {
    let database = fresh_database();
    instances::a_decision_on_one_instance_wakes_the_caller_on_another(
        instance(&database).await,
        instance(&database).await,
    )
    .await;
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
    instances::instances_claim_disjoint_work(stores, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_keep_one_audit_chain() {
    let database = fresh_database();
    let stores = [
        instance(&database).await,
        instance(&database).await,
        instance(&database).await,
    ];
    instances::concurrent_instances_keep_one_audit_chain(stores, 40).await;
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
