//! The notification outbox under load:
//! (1) deliveries per second from two delivery workers (two governors on
//!     one SQLite file) to a local webhook receiver;
//! (2) what writing notifications adds to a call that parks for approval
//!     (SQLite, durable): parks per second with no target and with one.
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
    // A warm-up round, then three alternating pairs.
    for (round, with_target) in [false, false, true, false, true, false, true]
        .into_iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("p.db")).await.unwrap();
        // Writing only: the deliveries are measured above.
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
        let took = t0.elapsed();
        if round == 0 {
            continue;
        }
        println!(
            "{}",
            json!({
                "bench": "park_sqlite_64_callers",
                "targets": usize::from(with_target),
                "parks": n / 64 * 64,
                "parks_per_s": ((n / 64 * 64) as f64 / took.as_secs_f64()).round(),
            })
        );
    }
}
