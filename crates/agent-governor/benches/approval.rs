//! Approval round trip: from the moment an approver decides until the
//! waiting caller's action starts running, in one process (memory store)
//! and across processes (an approver child process on one SQLite file);
//! and resume throughput.
//!
//! Run: `cargo bench -p agent-governor --bench approval`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_governor::prelude::*;
use agent_governor::{Action, EventKind, Store};

/// Set in the approver child process: the database file to approve in.
const APPROVER_ENV: &str = "GOVERNOR_BENCH_APPROVER";

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(path) = std::env::var(APPROVER_ENV) {
        rt.block_on(approver(path.into()));
        return;
    }
    // `GOVERNOR_BENCH_ONLY=round_trip` (round_trip_task, round_trip_busy,
    // round_trip_outside, cpu_after, approve_alone, cross_process, resume)
    // runs one workload (or those starting so), for profiling.
    let only = std::env::var("GOVERNOR_BENCH_ONLY").unwrap_or_default();
    let run = |w: &str| only.is_empty() || w.starts_with(&only);
    let n = if quick { 200 } else { 5_000 };
    if run("round_trip_task") {
        // As in the HTTP API: the decision is made by a task on the
        // runtime, so waking the caller is a local schedule.
        rt.block_on(async { tokio::spawn(round_trip(n, "", false)).await.unwrap() });
    }
    if run("round_trip_busy") {
        // The same on a runtime that is not idle while the caller waits:
        // no thread parks, so nothing wakes cold.
        rt.block_on(async { tokio::spawn(round_trip(n, "_busy", true)).await.unwrap() });
    }
    if run("round_trip_outside") {
        // From a thread outside the runtime: every wake-up also has to
        // wake a parked worker thread (a futex call, slow in a VM).
        rt.block_on(round_trip(n, "_from_outside", false));
    }
    if run("cpu_after") {
        // The same fixed computation after the pause the idle and busy
        // round trips take: how much slower this machine runs any code
        // right after its worker threads parked.
        rt.block_on(async { tokio::spawn(cpu_after_pause(n)).await.unwrap() });
    }
    if run("approve_alone") {
        rt.block_on(async { tokio::spawn(approve_alone(n)).await.unwrap() });
    }
    if run("cross_process") {
        rt.block_on(cross_process_round_trip(if quick { 20 } else { 500 }));
    }
    if run("resume") {
        rt.block_on(resume_throughput(if quick { 500 } else { 10_000 }));
    }
}

fn print_latencies(workload: &str, store: &str, mut samples: Vec<u64>) {
    samples.sort_unstable();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "{{\"workload\":\"{workload}\",\"store\":\"{store}\",\"p50_us\":{:.1},\"p99_us\":{:.1},\"samples\":{n}}}",
        at(0.5),
        at(0.99)
    );
}

async fn sqlite_governor(path: &std::path::Path) -> Governor {
    Governor::builder()
        .store(
            agent_governor::sqlite::SqliteStore::open(path)
                .await
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// The child process: approves every request it finds in the file until
/// it is killed.
async fn approver(path: std::path::PathBuf) {
    let g = sqlite_governor(&path).await;
    let cfo = Principal::new("cfo");
    let query = agent_governor::ExecutionQuery {
        statuses: vec![ExecutionStatus::AwaitingApproval],
        limit: 64,
        ..Default::default()
    };
    loop {
        for e in g.store().executions(&query).await.unwrap() {
            // A conflict means it was decided already.
            let _ = g.approve(e.id, &cfo, None).await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A caller waits in this process; another process approves through the
/// same SQLite file. Measured from the decision's recorded time to the
/// moment the caller's action starts (one machine, one clock).
async fn cross_process_round_trip(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round_trip.db");
    let g = sqlite_governor(&path).await;
    let action = g
        .action("transfer")
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::from_secs(30)))
        .build()
        .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(APPROVER_ENV, &path)
        .spawn()
        .unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started: Arc<Mutex<Option<chrono::DateTime<chrono::Utc>>>> = Arc::default();
        let s = Arc::clone(&started);
        action
            .run(Args::new().arg("i", &i), || async move {
                *s.lock().unwrap() = Some(chrono::Utc::now());
                Ok::<_, GovernError>(())
            })
            .await
            .unwrap();
        let continued = started.lock().unwrap().unwrap();
        let e = g
            .store()
            .executions(&agent_governor::ExecutionQuery {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .remove(0);
        let decided = e.approval.unwrap().stages[0].decisions[0].at;
        let micros = (continued - decided).num_microseconds().unwrap_or(0).max(0);
        samples.push(micros as u64 * 1000);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    print_latencies("approval_round_trip_cross_process", "sqlite", samples);
}

/// 200 µs in which the worker threads park (idle: a quiet server) or
/// keep yielding (busy: a server with other work).
async fn pause(busy: bool) {
    if busy {
        let until = Instant::now() + Duration::from_micros(200);
        while Instant::now() < until {
            tokio::task::yield_now().await;
        }
    } else {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// From `approve` until the waiting caller's action starts.
async fn round_trip(n: usize, suffix: &str, busy: bool) {
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
    // How long `approve` itself takes, apart from waking the caller.
    let mut deciding = Vec::with_capacity(n);
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
        pause(busy).await;
        let decided = Instant::now();
        g.approve(id, &cfo, None).await.unwrap();
        deciding.push(decided.elapsed().as_nanos() as u64);
        caller.await.unwrap().unwrap();
        let continued = started.lock().unwrap().unwrap();
        samples.push(continued.duration_since(decided).as_nanos() as u64);
    }
    print_latencies(&format!("approval_round_trip{suffix}"), "memory", samples);
    print_latencies(&format!("approve_call{suffix}"), "memory", deciding);
}

/// Fixed work, timed after an idle pause (the workers park) and after a
/// busy one (they yield): a computation in registers only, and 2,000
/// scattered reads of a 256 KiB table (in the caches when warm).
async fn cpu_after_pause(n: usize) {
    fn compute() -> u64 {
        let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15_u64);
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        x
    }
    let table: Vec<u64> = (0..32 * 1024).collect();
    let read = |table: &[u64]| {
        let mut i = 0usize;
        let mut sum = 0u64;
        for _ in 0..2_000 {
            sum = sum.wrapping_add(table[i]);
            i = (i + 4099 + sum as usize % 7) % table.len();
        }
        sum
    };
    for (what, busy) in [
        ("compute", false),
        ("compute", true),
        ("reads", false),
        ("reads", true),
    ] {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            pause(busy).await;
            let t = Instant::now();
            std::hint::black_box(if what == "compute" {
                compute()
            } else {
                read(&table)
            });
            samples.push(t.elapsed().as_nanos() as u64);
        }
        let pause = if busy { "busy" } else { "idle" };
        print_latencies(&format!("{what}_after_{pause}_pause"), "-", samples);
    }
}

/// `approve` on executions nobody waits for (the async pattern): the cost
/// of the decision itself, without waking anyone.
async fn approve_alone(n: usize) {
    let g = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let action = g
        .action("transfer")
        .policy(ApprovalPolicy::new(["cfo"]))
        .build()
        .unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        match action
            .run(Args::new().arg("i", &i), || async {
                Ok::<_, GovernError>(())
            })
            .await
        {
            Err(GovernError::Pending { execution_id }) => ids.push(execution_id),
            other => panic!("expected a parked call, got {other:?}"),
        }
    }
    let cfo = Principal::new("cfo");
    let mut samples = Vec::with_capacity(n);
    for id in ids {
        let t = Instant::now();
        g.approve(id, &cfo, None).await.unwrap();
        samples.push(t.elapsed().as_nanos() as u64);
    }
    print_latencies("approve_call_nobody_waiting", "memory", samples);
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
