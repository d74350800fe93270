//! A fresh schema per test on the test server.

use governor_postgres::{PostgresOptions, PostgresStore};

/// The test server's URL.
pub fn url() -> String {
    std::env::var("GOVERNOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// A store on a fresh, empty schema.
pub async fn fresh_store() -> PostgresStore {
    PostgresStore::connect_with(&url(), PostgresOptions::new().schema(fresh_schema()))
        .await
        .unwrap()
}
