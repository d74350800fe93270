//! MongoDB with several store handles (instances) in one process: durable
//! governed calls per second from 1 and from 2 instances, the latency from
//! an approval on instance B until the caller on instance A continues, and
//! resumes per second with 2 workers.
//!
//! Run: `cargo bench -p governor-mongodb --bench instances` (reads
//! `GOVERNOR_TEST_MONGODB_URL`; `--quick` for a short run). Drops the
//! `bench_` databases it made.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use governor_core::*;
use governor_mongodb::{MongoOptions, MongoStore};

fn url() -> String {
    std::env::var("GOVERNOR_TEST_MONGODB_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".into())
}

fn fresh() -> String {
    format!("bench_{}", uuid::Uuid::now_v7().simple())
}

async fn store(database: &str) -> Arc<MongoStore> {
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let n = if quick { 500 } else { 5_000 };
        for instances in [1, 2] {
            calls(instances, n).await;
        }
        cross_instance(if quick { 20 } else { 200 }).await;
        resumes(if quick { 200 } else { 2_000 }).await;
        drop_databases().await;
    });
}

/// `instances` store handles on one database making `n` durable governed
/// calls (with AuditPolicy) between them, 64 at a time each.
async fn calls(instances: usize, n: usize) {
    let database = fresh();
    let mut actions = Vec::new();
    for _ in 0..instances {
        let g = governor(&store(&database).await);
        actions.push(Arc::new(
            g.action("bench")
                .policy(AuditPolicy::new())
                .build()
                .unwrap(),
        ));
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per = n / instances;
    for action in &actions {
        for worker in 0..64 {
            let action = Arc::clone(action);
            tasks.spawn(async move {
                for i in (worker..per).step_by(64) {
                    action
                        .run(Args::new().arg("i", &i), || async {
                            Ok::<_, GovernError>(())
                        })
                        .await
                        .unwrap();
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"workload\":\"durable_calls\",\"store\":\"mongodb\",\"instances\":{instances},\"calls\":{},\"calls_per_s\":{:.0}}}",
        per * instances,
        (per * instances) as f64 / secs
    );
}

/// Approve on instance B; the caller waits on instance A.
async fn cross_instance(n: usize) {
    let database = fresh();
    let (a, b) = (store(&database).await, store(&database).await);
    let (ga, gb) = (governor(&a), governor(&b));
    let action = Arc::new(
        ga.action("pay")
            .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::from_secs(30)))
            .build()
            .unwrap(),
    );
    let cfo = Principal::new("cfo");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let action = Arc::clone(&action);
        let ran = Arc::new(std::sync::Mutex::new(None));
        let seen = Arc::clone(&ran);
        let caller = tokio::spawn(async move {
            action
                .run(Args::new().arg("i", &i), || async move {
                    *seen.lock().unwrap() = Some(Instant::now());
                    Ok::<_, GovernError>(())
                })
                .await
                .unwrap()
        });
        let id = loop {
            let parked = a
                .executions(&ExecutionQuery {
                    statuses: vec![ExecutionStatus::AwaitingApproval],
                    limit: 1,
                    ..Default::default()
                })
                .await
                .unwrap();
            if let Some(e) = parked.first() {
                break e.id;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let decided = Instant::now();
        gb.approve(id, &cfo, None).await.unwrap();
        caller.await.unwrap();
        let ran = ran.lock().unwrap().take().unwrap();
        samples.push(ran.duration_since(decided).as_micros() as u64);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "{{\"workload\":\"approve_on_b_caller_on_a\",\"store\":\"mongodb\",\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"samples\":{n}}}",
        at(0.5),
        at(0.99)
    );
}

fn resumable(g: &Governor) -> Action {
    g.action("job")
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::ZERO))
        .resumable(|i: serde_json::Value| async move { Ok::<_, GovernError>(i) })
        .build()
        .unwrap()
}

/// 2 workers (each its own store handle) resume `n` approved executions.
async fn resumes(n: usize) {
    let database = fresh();
    let g = governor(&store(&database).await);
    let action = resumable(&g);
    for i in 0..n {
        let Err(GovernError::Pending { execution_id }) = action
            .run(Args::new().arg("i", &i), || async {
                Ok::<_, GovernError>(serde_json::Value::Null)
            })
            .await
        else {
            panic!("not parked")
        };
        g.approve(execution_id, &Principal::new("cfo"), None)
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..2 {
        let g = governor(&store(&database).await);
        let _action = resumable(&g);
        workers.spawn(async move {
            let _action = _action;
            let mut empty = 0;
            while empty < 3 {
                match g.resume_approved(&format!("w{w}"), 64).await.unwrap() {
                    0 => empty += 1,
                    _ => empty = 0,
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"workload\":\"resume\",\"store\":\"mongodb\",\"workers\":2,\"executions\":{n},\"per_s\":{:.0}}}",
        n as f64 / secs
    );
}

async fn drop_databases() {
    let client = mongodb::Client::with_uri_str(url()).await.unwrap();
    for name in client.list_database_names().await.unwrap() {
        if name.starts_with("bench_") {
            client.database(&name).drop().await.unwrap();
        }
    }
}
