//! A fresh schema per test on the test server.

use std::sync::atomic::{AtomicBool, Ordering};

use governor_postgres::{PostgresOptions, PostgresStore};

/// The test server's URL.
pub(crate) fn url() -> String {
    std::env::var("GOVERNOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name no other test uses (`t_` and a v7 uuid, which says when
/// it was made).
pub(crate) fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// A store on a fresh, empty schema. The first call of a test run drops
/// the schemas earlier runs left behind more than an hour ago.
pub(crate) async fn fresh_store() -> PostgresStore {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        sweep().await;
    }
    PostgresStore::connect_with(&url(), PostgresOptions::new().schema(fresh_schema()))
        .await
        .unwrap()
}

async fn sweep() {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname ~ '^t_[0-9a-f]{32}$'",
            &[],
        )
        .await
        .unwrap();
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    for row in rows {
        let name: String = row.get(0);
        let made = uuid::Uuid::parse_str(&name[2..])
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|t| t.to_unix().0 as i64 * 1000);
        if made.is_some_and(|ms| ms < hour_ago) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
                .await;
        }
    }
}
