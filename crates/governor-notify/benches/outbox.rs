//! The notification outbox under load:
//! (1) deliveries per second from two delivery workers (two governors on
//!     one SQLite file) to a local webhook receiver;
//! (2) what writing notifications adds to a call that parks for approval
//!     (SQLite, durable): the median change of parks per second over ten
//!     alternating pairs of rounds, without a target and with one;
//! (3) request made → email accepted by a real SMTP server (aiosmtpd,
//!     `GOVERNOR_TEST_SMTP_PYTHON`), p50/p99, SQLite durable.
//!
//! Run: `cargo bench -p governor-notify --bench outbox` (`-- --quick`
//! for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor_core::*;
use governor_notify::WebhookTarget;
use governor_sqlite::SqliteStore;
use serde_json::json;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = if quick { 2_000 } else { 20_000 };
    rt.block_on(deliveries(n));
    rt.block_on(park_cost(if quick { 1_000 } else { 5_000 }));
    rt.block_on(request_to_email(if quick { 100 } else { 500 }));
}

// The tests' SMTP server; the bench uses part of it.
#[allow(dead_code)]
#[path = "../tests/it/sink.rs"]
mod sink;

/// The email target, noting when the SMTP server accepted each email.
struct Timed {
    inner: governor_notify::EmailTarget,
    accepted: Arc<std::sync::Mutex<std::collections::HashMap<ExecutionId, Instant>>>,
}

#[async_trait]
impl DeliveryTarget for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn wants(&self, kind: NotificationKind) -> bool {
        self.inner.wants(kind)
    }
    fn recipients(
        &self,
        kind: NotificationKind,
        execution: &Execution,
        request: Option<&ApprovalRequest>,
    ) -> Vec<Option<String>> {
        self.inner.recipients(kind, execution, request)
    }
    async fn deliver(&self, g: &Governor, n: &Notification) -> Result<(), DeliveryError> {
        self.inner.deliver(g, n).await?;
        self.accepted
            .lock()
            .unwrap()
            .insert(n.execution_id, Instant::now());
        Ok(())
    }
}

/// Requests one at a time (every 10 ms), each emailed to the CFO; the
/// time from the call to the SMTP server's 250 for its email.
async fn request_to_email(n: usize) {
    let sink = sink::Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db")).await.unwrap();
    let mut config = governor_notify::EmailConfig::new(
        "127.0.0.1",
        "governor@example.com",
        "https://governor.example.com",
    );
    config.port = Some(sink.port);
    config.security = governor_notify::SmtpSecurity::None;
    let accepted = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let g = Governor::builder()
        .store(store)
        .link_key(LinkKey::from_bytes([1; 32]))
        .deliver_to(Timed {
            inner: governor_notify::EmailTarget::new(config).unwrap(),
            accepted: Arc::clone(&accepted),
        })
        .build()
        .unwrap();
    let action = g
        .action("wire")
        .display(Display::titled("Wire {amount:currency(EUR)} to {to}"))
        .policy(ApprovalPolicy::new(["cfo@example.com"]))
        .build()
        .unwrap();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t0 = Instant::now();
        let id = match action
            .run_as(
                Principal::new("agent"),
                Args::new()
                    .arg("amount", &(10_000 + i))
                    .arg("to", &"Globex"),
                || async { Ok::<_, GovernError>(0) },
            )
            .await
        {
            Err(GovernError::Pending { execution_id }) => execution_id,
            other => panic!("{other:?}"),
        };
        let at = loop {
            if let Some(at) = accepted.lock().unwrap().get(&id) {
                break *at;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        // The first 20 warm the pool and the page cache.
        if i >= 20 {
            latencies.push(at - t0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{}",
        json!({
            "bench": "request_to_email_accepted_sqlite",
            "emails": latencies.len(),
            "p50_ms": (pct(0.50) * 100.0).round() / 100.0,
            "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
            "max_ms": (pct(1.0) * 100.0).round() / 100.0,
        })
    );
    assert_eq!(sink.messages().len(), n + 20);
}

/// Writes `n` notifications (through parked calls' creations, 100 per
/// execution), then times two workers delivering them all.
async fn deliveries(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("b.db")).await.unwrap());
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let per = 100;
    for _ in 0..n / per {
        let mut e = Execution::new(
            "wire".into(),
            Arc::new(Principal::new("agent")),
            Json::encode(&json!({"amount": 5})).unwrap(),
        );
        e.status = ExecutionStatus::AwaitingApproval;
        let notice =
            Json::encode(&json!({"status": "awaiting_approval", "at": chrono::Utc::now()}))
                .unwrap();
        let mut c = Creation::new(e);
        for _ in 0..per {
            c.notifications.push(Notification::new(
                c.execution.id,
                NotificationKind::Requested,
                "webhook:bench",
                notice.clone(),
                chrono::Utc::now(),
            ));
        }
        store.create(&c).await.unwrap();
    }
    let workers: Vec<Governor> = (0..2)
        .map(|_| {
            Governor::builder()
                .shared_store(Arc::clone(&store))
                .deliver_to(WebhookTarget::new("bench", &url, SECRET).unwrap())
                .build()
                .unwrap()
        })
        .collect();
    let t0 = Instant::now();
    for w in &workers {
        w.spawn_delivery();
    }
    while received.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t0.elapsed();
    // Recorded as delivered, too.
    loop {
        let pending = store
            .notifications(&NotificationQuery {
                state: Some(DeliveryState::Pending),
                limit: 1,
                ..NotificationQuery::default()
            })
            .await
            .unwrap();
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recorded = t0.elapsed();
    println!(
        "{}",
        json!({
            "bench": "outbox_deliveries_sqlite_2_workers_webhook",
            "notifications": n,
            "received_per_s": (n as f64 / took.as_secs_f64()).round(),
            "recorded_per_s": (n as f64 / recorded.as_secs_f64()).round(),
        })
    );
}

/// A target that takes every notification at once.
struct Sink;

#[async_trait]
impl DeliveryTarget for Sink {
    fn name(&self) -> &str {
        "sink"
    }
    async fn deliver(&self, _: &Governor, _: &Notification) -> Result<(), DeliveryError> {
        Ok(())
    }
}

/// Parks `n` calls from 64 concurrent callers on SQLite, without and
/// with a target (writing its notification; delivered elsewhere).
async fn park_cost(n: usize) {
    // A warm-up round, then alternating pairs; the summary is the median
    // of the pairs' ratios (single rounds vary by ±10 % on this machine).
    let pairs = 10;
    let mut ratios = Vec::new();
    let mut without = 0.0;
    for round in 0..=2 * pairs {
        let with_target = round % 2 == 0 && round > 0;
        let rate = park_round(n, with_target).await;
        if round == 0 {
            continue;
        }
        if with_target {
            ratios.push(rate / without);
        } else {
            without = rate;
        }
    }
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[pairs / 2 - 1] + ratios[pairs / 2]) / 2.0;
    println!(
        "{}",
        json!({
            "bench": "park_sqlite_64_callers_cost_of_one_target",
            "pairs": pairs,
            "parks_per_round": n / 64 * 64,
            "median_change_pct": ((median - 1.0) * 1000.0).round() / 10.0,
            "min_change_pct": ((ratios[0] - 1.0) * 1000.0).round() / 10.0,
            "max_change_pct": ((ratios[pairs - 1] - 1.0) * 1000.0).round() / 10.0,
        })
    );
}

/// One round: parks per second on a fresh durable SQLite file, with or
/// without one delivery target (writing only: the deliveries are measured
/// above).
async fn park_round(n: usize, with_target: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("p.db")).await.unwrap();
    let mut b = Governor::builder().store(store).capture_state(false);
    if with_target {
        b = b.deliver_to(Sink).deliver_automatically(false);
    }
    let g = b.build().unwrap();
    let action = g
        .action("wire")
        .policy(ApprovalPolicy::new(["cfo"]))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let action = action.clone();
            tokio::spawn(async move {
                for _ in 0..n / 64 {
                    let r = action
                        .run_as(
                            Principal::new("agent"),
                            Args::new().arg("amount", &5),
                            || async { Ok::<_, GovernError>(0) },
                        )
                        .await;
                    assert!(matches!(r, Err(GovernError::Pending { .. })));
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    (n / 64 * 64) as f64 / t0.elapsed().as_secs_f64()
}
