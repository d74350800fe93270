//! Several store handles on one schema behave as several instances.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor_core::*;
use governor_postgres::{PostgresOptions, PostgresStore};

use crate::support::{fresh_schema, url};

async fn instance(schema: &str) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::connect_with(&url(), PostgresOptions::new().schema(schema))
            .await
            .unwrap(),
    )
}

fn governor(store: &Arc<PostgresStore>) -> Governor {
    Governor::builder()
        .shared_store(store.clone())
        .build()
        .unwrap()
}

async fn wait_for_status(store: &PostgresStore, status: ExecutionStatus) -> Execution {
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

/// Runs `pay` on `a` (waiting up to 30 s for a decision) and returns the
/// parked execution and the caller's task.
async fn parked_caller(
    a: &Arc<PostgresStore>,
) -> (Execution, tokio::task::JoinHandle<Result<u32, GovernError>>) {
    let g = governor(a);
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
    (
        wait_for_status(a, ExecutionStatus::AwaitingApproval).await,
        caller,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_instance_wakes_the_caller_on_another() {
    let schema = fresh_schema();
    let (a, b) = (instance(&schema).await, instance(&schema).await);
    let (parked, caller) = parked_caller(&a).await;
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
async fn a_caller_still_wakes_after_its_listener_connection_is_killed() {
    let schema = fresh_schema();
    let (a, b) = (instance(&schema).await, instance(&schema).await);
    let (parked, caller) = parked_caller(&a).await;
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
    for i in 0..200 {
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
                loop {
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
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|e| e.id));
                }
            }));
        }
    }
    let mut seen = HashSet::new();
    for c in claimers {
        for id in c.await.unwrap() {
            assert!(seen.insert(id), "{id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_keep_one_audit_chain() {
    let schema = fresh_schema();
    let stores = [
        instance(&schema).await,
        instance(&schema).await,
        instance(&schema).await,
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
        for i in 0..100 {
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
    assert_eq!(verify_chain(&entries), Ok(300));
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
    let g = governor(&store);
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
