//! PostgreSQL with several instances: durable governed calls per second
//! from 1 and from 3 instances (each its own process), the latency from an
//! approval on instance A until the caller on instance B continues, and
//! resumes per second with 2 workers.
//!
//! Run: `cargo bench -p governor-postgres --bench instances` (reads
//! `GOVERNOR_TEST_POSTGRES_URL`; `--quick` for a short run;
//! `GOVERNOR_BENCH_CALLERS`, `GOVERNOR_BENCH_WRITERS` and
//! `GOVERNOR_BENCH_ONLY=calls` vary the throughput runs).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use governor_core::*;
use governor_postgres::{PostgresOptions, PostgresStore};

/// Set in a child process: `calls:<schema>:<n>` or `resume:<schema>:<n>`.
const ROLE_ENV: &str = "GOVERNOR_BENCH_ROLE";

fn url() -> String {
    std::env::var("GOVERNOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn store(schema: &str) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::connect_with(
            &url(),
            PostgresOptions::new().schema(schema).writers(writers()),
        )
        .await
        .unwrap(),
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let parts: Vec<&str> = role.split(':').collect();
        let n: usize = parts[2].parse().unwrap();
        rt.block_on(async {
            match parts[0] {
                "calls" => calls(parts[1], n).await,
                _ => resume_worker(parts[1], n).await,
            }
        });
        return;
    }
    let n = if quick { 2_000 } else { 20_000 };
    for instances in [1, 3] {
        let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
        rt.block_on(PostgresStore::migrate(&url(), &schema))
            .unwrap();
        let started = Instant::now();
        let children: Vec<_> = (0..instances)
            .map(|_| child(&format!("calls:{schema}:{}", n / instances)))
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{{\"workload\":\"durable_calls\",\"store\":\"postgres\",\"instances\":{instances},\"callers\":{},\"writers\":{},\"calls\":{n},\"calls_per_s\":{:.0}}}",
            callers(),
            writers(),
            n as f64 / secs
        );
    }
    // `GOVERNOR_BENCH_ONLY=calls` stops after the throughput runs.
    if std::env::var("GOVERNOR_BENCH_ONLY").as_deref() != Ok("calls") {
        rt.block_on(cross_instance(if quick { 50 } else { 500 }));
        rt.block_on(resumes(if quick { 1_000 } else { 10_000 }));
    }
    rt.block_on(drop_schemas());
}

/// Drops the schemas this run made, so runs do not pile up data.
async fn drop_schemas() {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        client
            .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
            .await
            .unwrap();
    }
}

fn child(role: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .env(ROLE_ENV, role)
        .spawn()
        .unwrap()
}

/// Concurrent callers per instance: `GOVERNOR_BENCH_CALLERS`, default 64.
fn callers() -> usize {
    std::env::var("GOVERNOR_BENCH_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Writer connections per instance: `GOVERNOR_BENCH_WRITERS`, default 1.
fn writers() -> usize {
    std::env::var("GOVERNOR_BENCH_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// One instance making `n` durable governed calls, [`callers`] at a time
/// (process start and connection set-up are inside the measured time).
async fn calls(schema: &str, n: usize) {
    let g = Governor::builder()
        .shared_store(store(schema).await)
        .build()
        .unwrap();
    let action = Arc::new(
        g.action("bench")
            .policy(AuditPolicy::new())
            .build()
            .unwrap(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    let callers = callers();
    for worker in 0..callers {
        let action = Arc::clone(&action);
        tasks.spawn(async move {
            for i in (worker..n).step_by(callers) {
                action
                    .run(Args::new().arg("i", &i), || async {
                        Ok::<_, GovernError>(())
                    })
                    .await
                    .unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn print_latencies(workload: &str, mut samples: Vec<u64>) {
    samples.sort_unstable();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "{{\"workload\":\"{workload}\",\"store\":\"postgres\",\"p50_us\":{:.1},\"p99_us\":{:.1},\"samples\":{n}}}",
        at(0.5),
        at(0.99)
    );
}

/// Approve on instance B; the caller waits on instance A.
async fn cross_instance(n: usize) {
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let (a, b) = (store(&schema).await, store(&schema).await);
    let ga = Governor::builder().shared_store(a.clone()).build().unwrap();
    let gb = Governor::builder().shared_store(b).build().unwrap();
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
        samples.push(ran.duration_since(decided).as_nanos() as u64);
    }
    print_latencies("approve_on_a_caller_on_b", samples);
}

/// 2 worker processes resume `n` approved executions.
async fn resumes(n: usize) {
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let s = store(&schema).await;
    let g = Governor::builder().shared_store(s.clone()).build().unwrap();
    let action = Arc::new(resumable(&g));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let (action, g) = (Arc::clone(&action), g.clone());
        tasks.spawn(async move {
            for i in (worker..n).step_by(32) {
                let Err(GovernError::Pending { execution_id }) = action
                    .run(Args::new().arg("i", &i), || async {
                        Ok::<_, GovernError>(0)
                    })
                    .await
                else {
                    panic!("not parked")
                };
                g.approve(execution_id, &Principal::new("cfo"), None)
                    .await
                    .unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| child(&format!("resume:{schema}:{n}")))
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"workload\":\"resume\",\"store\":\"postgres\",\"workers\":2,\"executions\":{n},\"per_s\":{:.0}}}",
        n as f64 / secs
    );
}

fn resumable(g: &Governor) -> Action {
    g.action("job")
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::ZERO))
        .resumable(|i: serde_json::Value| async move { Ok::<_, GovernError>(i) })
        .build()
        .unwrap()
}

/// A worker process: resumes until no approved execution is left.
async fn resume_worker(schema: &str, _n: usize) {
    let s = store(schema).await;
    let g = Governor::builder().shared_store(s.clone()).build().unwrap();
    let _action = resumable(&g);
    let owner = format!("w{}", std::process::id());
    loop {
        let done = g.resume_approved(&owner, 64).await.unwrap();
        if done == 0 {
            let left = s
                .executions(&ExecutionQuery {
                    statuses: vec![ExecutionStatus::Approved],
                    limit: 1,
                    ..Default::default()
                })
                .await
                .unwrap();
            if left.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
