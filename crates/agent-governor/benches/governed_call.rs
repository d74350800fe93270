//! Cost of a governed call: (a) a bare async fn, (b) `#[govern]` with
//! defaults, (c) validation + authorization + rate limit + audit; on the
//! memory store (one caller) and the SQLite store (durable, many callers).
//!
//! Run: `cargo bench -p agent-governor --bench governed_call`
//! Output: one JSON line per workload (also used by BENCHMARKS.md and
//! `bench/compare.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agent_governor::prelude::*;
use agent_governor::sqlite::{Durability, SqliteOptions, SqliteStore};
use governor_core::testing::InterceptWrites;
use serde_json::Value;

static GOV: OnceLock<Governor> = OnceLock::new();

fn gov() -> &'static Governor {
    GOV.get().expect("governor installed")
}

async fn bare(amount: f64, recipient: String) -> Value {
    black_box(recipient);
    Value::from(amount)
}

/// A governor whose store never evicts within the run, to measure what
/// each execution retains.
static RETAIN: OnceLock<Governor> = OnceLock::new();

fn retain_gov() -> &'static Governor {
    RETAIN.get_or_init(|| {
        Governor::builder()
            .store(MemoryStore::with_capacity(10_000_000))
            .build()
            .unwrap()
    })
}

#[govern(governor = retain_gov(), name = "governed_default")]
async fn governed_retained(amount: f64, recipient: String) -> Value {
    black_box(recipient);
    Value::from(amount)
}

#[govern(governor = gov())]
async fn governed_default(amount: f64, recipient: String) -> Value {
    black_box(recipient);
    Value::from(amount)
}

#[govern(governor = gov(), policies = [
    ValidationPolicy::new().input_validator(|i: &Value| i["amount"].as_f64().is_some_and(|a| a > 0.0)),
    AuthorizationPolicy::new().require_roles(["admin", "finance"]),
    RateLimitPolicy::new(u32::MAX, Duration::from_secs(60)).per_principal(),
    AuditPolicy::new().sensitive_fields(["ssn"]).compliance_tags(["SOC2"]),
])]
async fn governed_policies(amount: f64, recipient: String) -> Value {
    black_box(recipient);
    Value::from(amount)
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Stats {
    p50_ns: f64,
    p99_ns: f64,
    per_sec: f64,
}

fn stats(mut samples: Vec<u64>, total: Duration) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize] as f64;
    Stats {
        p50_ns: at(0.50),
        p99_ns: at(0.99),
        per_sec: samples.len() as f64 / total.as_secs_f64(),
    }
}

/// Calls made before measuring: enough to fill the memory store to its
/// default capacity (100,000 finished executions) and then some, so the
/// measured calls see the steady state of a long-running process (every
/// call evicts one, memory no longer grows) rather than the heap growing.
const WARM_UP: usize = 110_000;

/// Times `n` sequential calls, each individually, after [`WARM_UP`]
/// (fewer with `--quick`).
async fn sequential<F, Fut>(n: usize, mut call: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..WARM_UP.min(n) {
        call(i).await;
    }
    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        call(i).await;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    stats(samples, start.elapsed())
}

fn report(workload: &str, store: &str, s: &Stats, extra: &str) {
    println!(
        "{{\"workload\":\"{workload}\",\"store\":\"{store}\",\"p50_us\":{:.3},\"p99_us\":{:.3},\"calls_per_sec\":{:.0}{extra}}}",
        s.p50_ns / 1000.0,
        s.p99_ns / 1000.0,
        s.per_sec
    );
}

async fn memory_benchmarks(n: usize, label: &str) {
    let admin = Principal::new("bench").with_roles(["admin"]);
    // `GOVERNOR_BENCH_ONLY=b` (a, c, b2, c2, retained) runs one workload (for
    // profiling).
    let only = std::env::var("GOVERNOR_BENCH_ONLY").unwrap_or_default();
    let run = |w: &str| only.is_empty() || only == w;
    if run("a") {
        let s = sequential(n, |i| async move {
            black_box(bare(i as f64 + 1.0, "Acme".into()).await);
        })
        .await;
        report("a_bare", "none", &s, "");
    }
    if run("b") {
        let s = sequential(n, |i| async move {
            black_box(
                governed_default(i as f64 + 1.0, "Acme".into())
                    .await
                    .unwrap(),
            );
        })
        .await;
        report("b_govern_default", label, &s, "");
    }
    if !run("c") {
        return;
    }
    let s = admin
        .clone()
        .scope(sequential(n, |i| async move {
            black_box(
                governed_policies(i as f64 + 1.0, "Acme".into())
                    .await
                    .unwrap(),
            );
        }))
        .await;
    report("c_four_policies", label, &s, "");
}

async fn retained_bytes(n: usize) -> f64 {
    black_box(governed_retained(0.0, "warm-up".into()).await.unwrap());
    let before = rss_bytes();
    for i in 0..n {
        black_box(
            governed_retained(i as f64 + 1.0, "Acme".into())
                .await
                .unwrap(),
        );
    }
    let after = rss_bytes();
    (after.saturating_sub(before)) as f64 / n as f64
}

/// Call `i` of (c) with `policies`, else of (b).
async fn governed_call(i: usize, policies: bool) {
    let amount = i as f64 + 1.0;
    if policies {
        black_box(governed_policies(amount, "Acme".into()).await.unwrap());
    } else {
        black_box(governed_default(amount, "Acme".into()).await.unwrap());
    }
}

/// Throughput of `callers` tasks each making calls until `n` are done
/// (on SQLite every call's records are committed, fsync, before it
/// returns).
async fn concurrent(n: usize, callers: usize, policies: bool) -> Stats {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(
            Principal::new("bench")
                .with_roles(["admin"])
                .scope(async move {
                    let mut samples = Vec::new();
                    loop {
                        let i = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            break samples;
                        }
                        let t = Instant::now();
                        governed_call(i, policies).await;
                        samples.push(t.elapsed().as_nanos() as u64);
                    }
                }),
        ));
    }
    let mut samples = Vec::with_capacity(n);
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    stats(samples, start.elapsed())
}

/// One caller: warms up, waits for the others at `ready`, then times
/// `n` calls. Returns the samples and the time from the start to its end.
fn caller_thread(
    n: usize,
    warm_up: usize,
    policies: bool,
    ready: Arc<std::sync::Barrier>,
) -> std::thread::JoinHandle<(Vec<u64>, Duration)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let principal = Principal::new("bench").with_roles(["admin"]);
        rt.block_on(principal.scope(async move {
            for i in 0..warm_up {
                governed_call(i, policies).await;
            }
            ready.wait();
            let start = Instant::now();
            let mut samples = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                governed_call(i, policies).await;
                samples.push(t.elapsed().as_nanos() as u64);
            }
            (samples, start.elapsed())
        }))
    })
}

/// The same store from two callers on two threads (this machine's two
/// cores), each with a runtime of its own: what one governor does when
/// its callers run in parallel. Each caller makes `n / 2` calls after
/// enough to bring its part of the store to the steady state of eviction.
fn two_threads(n: usize, label: &str) {
    let only = std::env::var("GOVERNOR_BENCH_ONLY").unwrap_or_default();
    for (workload, policies) in [("b_govern_default", false), ("c_four_policies", true)] {
        if !only.is_empty() && only != format!("{}2", &workload[..1]) {
            continue;
        }
        let ready = Arc::new(std::sync::Barrier::new(2));
        let callers: Vec<_> = (0..2)
            .map(|_| caller_thread(n / 2, WARM_UP.min(n) / 2, policies, Arc::clone(&ready)))
            .collect();
        let mut samples = Vec::with_capacity(n);
        let mut longest = Duration::ZERO;
        for c in callers {
            let (s, took) = c.join().unwrap();
            samples.extend(s);
            longest = longest.max(took);
        }
        let s = stats(samples, longest);
        report(workload, label, &s, ",\"callers\":2,\"threads\":2");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick" || a == "--test");
    let which = std::env::var("GOVERNOR_BENCH_STORE").unwrap_or_else(|_| "memory".into());
    let n = if quick { 2_000 } else { 200_000 };

    if which == "sqlite" {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            // `GOVERNOR_BENCH_SYNC=normal`: no fsync per commit, to compare
            // the writer's CPU work without the disk's noise.
            let durability = match std::env::var("GOVERNOR_BENCH_SYNC").as_deref() {
                Ok("normal") => Durability::Normal,
                _ => Durability::Full,
            };
            let options = SqliteOptions::new().durability(durability);
            let store = SqliteStore::open_with(dir.path().join("bench.db"), options)
                .await
                .unwrap();
            GOV.set(Governor::builder().store(store).build().unwrap())
                .unwrap();
            let n = if quick { 2_000 } else { 100_000 };
            // `GOVERNOR_BENCH_ONLY=b|c` runs one workload and
            // `GOVERNOR_BENCH_CALLERS=256` one caller count (for A/B runs).
            let only = std::env::var("GOVERNOR_BENCH_ONLY").unwrap_or_default();
            let run = |w: &str| only.is_empty() || only == w;
            let callers_only: Option<usize> = std::env::var("GOVERNOR_BENCH_CALLERS")
                .ok()
                .and_then(|c| c.parse().ok());
            let counts = [1, 64, 256]
                .into_iter()
                .filter(|c| run("b") && callers_only.is_none_or(|o| o == *c));
            for callers in counts {
                let s = concurrent(n / if callers == 1 { 20 } else { 1 }, callers, false).await;
                report(
                    "b_govern_default",
                    "sqlite",
                    &s,
                    &format!(",\"callers\":{callers}"),
                );
            }
            if run("c") {
                let s = concurrent(n, 256, true).await;
                report("c_four_policies", "sqlite", &s, ",\"callers\":256");
            }
        });
        return;
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The default capacity: a long-running process evicts old finished
        // executions, so the store is measured in that steady state.
        // `GOVERNOR_BENCH_CAPACITY` changes it (to see what a store that
        // fits in the CPU's caches costs).
        let store = match std::env::var("GOVERNOR_BENCH_CAPACITY").map(|c| c.parse()) {
            Ok(Ok(capacity)) => MemoryStore::with_capacity(capacity),
            _ => MemoryStore::new(),
        };
        // `GOVERNOR_BENCH_STORE=discard`: the same calls with every write
        // dropped, to see what the lifecycle costs without the store.
        let builder = Governor::builder();
        let (builder, label) = if which == "discard" {
            let discard = InterceptWrites::new(store, |_| Some(Ok(())));
            (builder.store(discard), "discard")
        } else {
            (builder.store(store), "memory")
        };
        GOV.set(builder.build().unwrap()).unwrap();
        memory_benchmarks(n, label).await;
    });
    two_threads(n, &which);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("GOVERNOR_BENCH_ONLY").is_ok_and(|w| w != "retained") {
        return;
    }
    rt.block_on(async {
        let bytes = retained_bytes(if quick { 20_000 } else { 500_000 }).await;
        println!("{{\"workload\":\"b_govern_default\",\"store\":\"memory\",\"retained_bytes_per_execution\":{bytes:.0}}}");
    });
}
