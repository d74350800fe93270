//! Approval round trip in one process: from the moment an approver calls
//! `Governor::approve` until the waiting caller's action starts running.
//!
//! Run: `cargo bench -p agent-governor --bench approval`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_governor::prelude::*;
use agent_governor::{Action, EventKind};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let n = if quick { 200 } else { 5_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let g = Governor::builder().store(MemoryStore::new()).build().unwrap();
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
    });
}
