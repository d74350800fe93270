//! A fresh database per test on the test server.

use std::sync::atomic::{AtomicBool, Ordering};

use governor_mongodb::{MongoOptions, MongoStore};

/// The test server's URL.
pub(crate) fn url() -> String {
    std::env::var("GOVERNOR_TEST_MONGODB_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".into())
}

/// A database name no other test uses (`t_` and a v7 uuid, which says
/// when it was made).
pub(crate) fn fresh_database() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// A store on a fresh, empty database. The first call of a test run drops
/// the databases earlier runs left behind more than an hour ago.
pub(crate) async fn fresh_store() -> MongoStore {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        sweep().await;
    }
    MongoStore::connect_with(&url(), MongoOptions::new().database(fresh_database()))
        .await
        .unwrap()
}

async fn sweep() {
    let client = mongodb::Client::with_uri_str(url()).await.unwrap();
    let names = client.list_database_names().await.unwrap();
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    for name in names
        .iter()
        .filter(|n| n.len() == 34 && n.starts_with("t_"))
    {
        let made = uuid::Uuid::parse_str(&name[2..])
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|t| t.to_unix().0 as i64 * 1000);
        if made.is_some_and(|ms| ms < hour_ago) {
            let _ = client.database(name).drop().await;
        }
    }
}
