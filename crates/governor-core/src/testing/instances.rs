//! Tests for stores that several instances share (PostgreSQL, MongoDB):
//! each takes store handles opened separately on one database, as
//! separate processes would.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::action::Args;
use crate::approval::ApprovalPolicy;
use crate::audit::verify_chain;
use crate::error::GovernError;
use crate::execution::{Execution, ExecutionStatus};
use crate::governor::Governor;
use crate::json::Json;
use crate::policy::AuditPolicy;
use crate::principal::Principal;
use crate::store::{Creation, ExecutionQuery, Store};

fn governor(store: &Arc<dyn Store>) -> Governor {
    Governor::builder()
        .shared_store(Arc::clone(store))
        .build()
        .unwrap()
}

/// The first execution in `status` on `store`, waiting up to 5 s for one.
pub async fn wait_for_status(store: &Arc<dyn Store>, status: ExecutionStatus) -> Execution {
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

/// Runs `pay` on `a` (waiting up to 30 s for a decision by `cfo`) and
/// returns the parked execution and the caller's task, which yields 7.
pub async fn parked_caller(
    a: &Arc<dyn Store>,
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

/// A decision made through `b` wakes the caller waiting on `a`.
pub async fn a_decision_on_one_instance_wakes_the_caller_on_another(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
) {
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

/// Three claimers on each of two instances, over `n` approved
/// executions: every execution is claimed exactly once.
pub async fn instances_claim_disjoint_work(stores: [Arc<dyn Store>; 2], n: usize) {
    for i in 0..n {
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
    for (k, store) in stores.iter().enumerate() {
        for w in 0..3 {
            let store = Arc::clone(store);
            claimers.push(tokio::spawn(async move {
                let owner = format!("i{k}w{w}");
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
    assert_eq!(seen.len(), n);
}

/// `per_instance` audited calls on each of three instances at once keep
/// one audit chain that verifies.
pub async fn concurrent_instances_keep_one_audit_chain(
    stores: [Arc<dyn Store>; 3],
    per_instance: usize,
) {
    let mut tasks = Vec::new();
    for store in &stores {
        let g = governor(store);
        let action = Arc::new(
            g.action("chained")
                .policy(AuditPolicy::new())
                .build()
                .unwrap(),
        );
        for i in 0..per_instance {
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
    let entries = stores[0].audit_entries(0, 10_000).await.unwrap();
    assert_eq!(verify_chain(&entries), Ok(3 * per_instance as u64));
}
