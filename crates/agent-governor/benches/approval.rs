//! Approval round trip in one process: from the moment an approver calls
//! `Governor::approve` until the waiting caller's action starts running.
//!
//! Run: `cargo bench -p agent-governor --bench approval`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_governor::prelude::*;
use agent_governor::{Action, EventKind, Store};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(round_trip(if quick { 200 } else { 5_000 }));
    rt.block_on(resume_throughput(if quick { 500 } else { 10_000 }));
}

/// From `approve` until the waiting caller's action starts.
async fn round_trip(n: usize) {
    let g = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let action: Arc<Action> = Arc::new(
        g.action("transfer")
            .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::from_secs(30)))
            .build()
            .unwrap(),
    );
    let cfo = Principal::new("cfo");
    let mut requests = g.events().subscribe();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started: Arc<Mutex<Option<Instant>>> = Arc::default();
        let s = Arc::clone(&started);
        let a = Arc::clone(&action);
        let caller = tokio::spawn(async move {
            a.run(Args::new(), || async move {
                *s.lock().unwrap() = Some(Instant::now());
                Ok::<_, GovernError>(())
            })
            .await
        });
        let id = loop {
            let event = requests.recv().await.unwrap();
            if event.kind == EventKind::ApprovalRequested {
                break event.execution_id;
            }
        };
        // Let the caller reach its wait before deciding.
        tokio::time::sleep(Duration::from_micros(200)).await;
        let decided = Instant::now();
        g.approve(id, &cfo, None).await.unwrap();
        caller.await.unwrap().unwrap();
        let continued = started.lock().unwrap().unwrap();
        samples.push(continued.duration_since(decided).as_nanos() as u64);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "{{\"workload\":\"approval_round_trip\",\"store\":\"memory\",\"p50_us\":{:.1},\"p99_us\":{:.1},\"samples\":{n}}}",
        at(0.5),
        at(0.99)
    );
}

#[derive(serde::Deserialize)]
struct Transfer {
    amount: u64,
}

/// Approved executions completed per second by two resume workers sharing
/// one SQLite file (durable writes).
async fn resume_throughput(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        agent_governor::sqlite::SqliteStore::open(dir.path().join("resume.db"))
            .await
            .unwrap(),
    );
    let build = |g: &Governor| {
        g.action("transfer")
            .policy(ApprovalPolicy::new(["cfo"]))
            .resumable(|t: Transfer| async move { Ok::<_, GovernError>(t.amount) })
            .build()
            .unwrap()
    };
    let a = Governor::builder()
        .shared_store(Arc::clone(&store))
        .build()
        .unwrap();
    let b = Governor::builder().shared_store(store).build().unwrap();
    let action = Arc::new(build(&a));
    let _on_b = build(&b);
    let cfo = Principal::new("cfo");
    // Park and approve n executions, 256 at a time.
    let all: Vec<u64> = (0..n as u64).collect();
    for chunk in all.chunks(256) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let (action, a, cfo) = (Arc::clone(&action), a.clone(), cfo.clone());
            tasks.push(tokio::spawn(async move {
                let id = match action
                    .run(Args::new().arg("amount", &i), || async move {
                        Ok::<_, GovernError>(i)
                    })
                    .await
                {
                    Err(GovernError::Pending { execution_id }) => execution_id,
                    other => panic!("{other:?}"),
                };
                a.approve(id, &cfo, None).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let started = Instant::now();
    let (x, y) = tokio::join!(drain(&a, "worker-a"), drain(&b, "worker-b"));
    let elapsed = started.elapsed();
    assert_eq!(x + y, n, "every approved execution completed once");
    println!(
        "{{\"workload\":\"resume_throughput\",\"store\":\"sqlite\",\"workers\":2,\"executions\":{n},\"completed_per_sec\":{:.0}}}",
        n as f64 / elapsed.as_secs_f64()
    );
}

/// Resumes until nothing approved is left.
async fn drain(g: &Governor, owner: &str) -> usize {
    let mut done = 0;
    loop {
        let n = g.resume_approved(owner, 64).await.unwrap();
        done += n;
        if n == 0 {
            let query = agent_governor::ExecutionQuery {
                statuses: vec![ExecutionStatus::Approved],
                limit: 1,
                ..Default::default()
            };
            if g.store().executions(&query).await.unwrap().is_empty() {
                return done;
            }
        }
    }
}
