//! Several store handles on one schema behave as several instances.

use std::sync::Arc;

use governor_core::testing::instances;
use governor_core::*;
use governor_postgres::{PostgresOptions, PostgresStore};

use crate::support::{fresh_schema, url};

async fn instance(schema: &str) -> Arc<dyn Store> {
    Arc::new(
        PostgresStore::connect_with(&url(), PostgresOptions::new().schema(schema))
            .await
            .unwrap(),
    )
}

fn governor(store: &Arc<dyn Store>) -> Governor {
    Governor::builder()
        .shared_store(Arc::clone(store))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_instance_wakes_the_caller_on_another() {
    let schema = fresh_schema();
    instances::a_decision_on_one_instance_wakes_the_caller_on_another(
        instance(&schema).await,
        instance(&schema).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_still_wakes_after_its_listener_connection_is_killed() {
    let schema = fresh_schema();
    let (a, b) = (instance(&schema).await, instance(&schema).await);
    let (parked, caller) = instances::parked_caller(&a).await;
    // Drops every listener on this schema (both instances'): decisions made
    // while they reconnect reach the caller by its re-read.
    let (admin, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'governor-listener' AND query = $1",
            &[&format!("LISTEN governor_{schema}")],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 2, "both instances listen");
    governor(&b)
        .approve(parked.id, &Principal::new("cfo"), None)
        .await
        .unwrap();
    assert_eq!(caller.await.unwrap().unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_claim_disjoint_work() {
    let schema = fresh_schema();
    let stores = [instance(&schema).await, instance(&schema).await];
    instances::instances_claim_disjoint_work(stores, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_keep_one_audit_chain() {
    let schema = fresh_schema();
    let stores = [
        instance(&schema).await,
        instance(&schema).await,
        instance(&schema).await,
    ];
    instances::concurrent_instances_keep_one_audit_chain(stores, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_instances_start_together() {
    let schema = fresh_schema();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move { PostgresStore::migrate(&url(), &schema).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for s in starts {
        applied += s.await.unwrap();
    }
    assert_eq!(applied, governor_postgres::SCHEMA_VERSION);
    // Opening without migrating accepts the current schema and refuses a
    // schema nobody migrated.
    PostgresStore::connect_with(
        &url(),
        PostgresOptions::new()
            .schema(&schema)
            .migrate_on_open(false),
    )
    .await
    .unwrap();
    let err = PostgresStore::connect_with(
        &url(),
        PostgresOptions::new()
            .schema(fresh_schema())
            .migrate_on_open(false),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_urls_are_refused_with_the_reason() {
    let err = PostgresStore::connect_with(&url(), PostgresOptions::new().schema("x; DROP TABLE y"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid);
    assert!(err.to_string().contains("schema name"), "{err}");
    let err = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    let err = PostgresStore::connect("not a url").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

/// The test server's URL over TLS: host `localhost` (the name in the
/// certificate Debian's PostgreSQL generates) and `sslmode=require`.
fn tls_url() -> String {
    let url = url().replace("127.0.0.1", "localhost");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode=require")
}

/// The server's certificate, read from where the server says it is.
async fn server_certificate() -> Vec<u8> {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client.query_one("SHOW ssl_cert_file", &[]).await.unwrap();
    std::fs::read(row.get::<_, String>(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_and_verified_when_the_url_requires_it() {
    let store = PostgresStore::connect_with(
        &tls_url(),
        PostgresOptions::new()
            .schema(fresh_schema())
            .tls_root_certificates(server_certificate().await),
    )
    .await
    .unwrap();
    let store = Arc::new(store);
    // Works as any store does, and the server sees only encrypted
    // connections from it.
    let g = governor(&(store.clone() as Arc<dyn Store>));
    let action = g.action("tls").build().unwrap();
    action
        .run(Args::new(), || async { Ok::<_, GovernError>(1) })
        .await
        .unwrap();
    let (admin, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name LIKE 'governor%' AND a.query LIKE '%' || $1 || '%'",
            &[&store.schema()],
        )
        .await
        .unwrap();
    let listener = rows.len();
    assert!(listener >= 1, "the listener's LISTEN names the schema");
    assert!(rows.iter().all(|r| r.get::<_, bool>(0)), "all encrypted");

    // libpq's verify-full means the same here: verified TLS; and the host
    // name is checked (the certificate names `localhost`, not the IP).
    let full = tls_url().replace("sslmode=require", "sslmode=verify-full");
    PostgresStore::connect_with(
        &full,
        PostgresOptions::new()
            .schema(fresh_schema())
            .tls_root_certificates(server_certificate().await),
    )
    .await
    .unwrap();
    let by_ip = full.replace("localhost", "127.0.0.1");
    let err = PostgresStore::connect_with(
        &by_ip,
        PostgresOptions::new()
            .schema(fresh_schema())
            .tls_root_certificates(server_certificate().await),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "the host name is verified: {err}"
    );

    // Without the server's certificate among the roots, it is refused.
    let err =
        PostgresStore::connect_with(&tls_url(), PostgresOptions::new().schema(fresh_schema()))
            .await
            .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let err = PostgresStore::connect_with(
        &tls_url(),
        PostgresOptions::new().tls_root_certificates("not a certificate"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}
