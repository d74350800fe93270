//! The outbox delivered: targets hear of requests, stages, decisions and
//! expiry at least once, failures are retried with backoff, then dead
//! until retried, and a worker that dies loses nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor_core::*;
use serde_json::json;

/// One delivery: the notification's id, kind, recipient and notice.
type Seen = (uuid::Uuid, NotificationKind, Option<String>, Notice);

/// Records what it is given; fails the first `fail_first` attempts.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    attempts: Arc<AtomicU32>,
    fail_first: u32,
    permanent: bool,
}

#[async_trait]
impl DeliveryTarget for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn recipients(
        &self,
        kind: NotificationKind,
        _execution: &Execution,
        request: Option<&ApprovalRequest>,
    ) -> Vec<Option<String>> {
        match kind {
            NotificationKind::Requested | NotificationKind::StageAdvanced => {
                waiting_approvers(request).into_iter().map(Some).collect()
            }
            _ => vec![None],
        }
    }
    async fn deliver(&self, g: &Governor, n: &Notification) -> Result<(), DeliveryError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt <= self.fail_first {
            return Err(if self.permanent {
                DeliveryError::permanent("no such mailbox")
            } else {
                DeliveryError::transient(format!("attempt {attempt}: connection refused"))
            });
        }
        let notice = g.notice_of(n).await?;
        self.seen
            .lock()
            .unwrap()
            .push((n.id, n.kind, n.recipient.clone(), notice));
        Ok(())
    }
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(50),
        lease: Duration::from_secs(5),
    }
}

fn governor(target: &Recorder, store: Arc<dyn Store>) -> Governor {
    Governor::builder()
        .shared_store(store)
        .deliver_to(target.clone())
        .retry_policy(quick())
        .build()
        .unwrap()
}

/// A wire transfer the CFO approves.
fn cfo_wire(g: &Governor) -> Action {
    g.action("wire")
        .policy(ApprovalPolicy::new(["cfo"]))
        .build()
        .unwrap()
}

async fn park(action: &Action, amount: u32) -> ExecutionId {
    match action
        .run_as(
            Principal::new("agent"),
            Args::new()
                .arg("amount", &amount)
                .arg("iban", &"DE89370400440532013000"),
            || async { Ok::<_, GovernError>(json!("ran")) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected a parked call, got {other:?}"),
    }
}

async fn until<F: Fn() -> bool>(what: &str, check: F) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn notifications_of(g: &Governor, id: ExecutionId) -> Vec<Notification> {
    g.notifications(&NotificationQuery {
        execution_id: Some(id),
        ..NotificationQuery::default()
    })
    .await
    .unwrap()
}

async fn states(g: &Governor, id: ExecutionId) -> Vec<(NotificationKind, DeliveryState, u32)> {
    notifications_of(g, id)
        .await
        .into_iter()
        .map(|n| (n.kind, n.state, n.attempts))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_hear_of_each_stage_and_the_decision() {
    let target = Recorder::default();
    let g = governor(&target, Arc::new(MemoryStore::new()));
    let action = g
        .action("wire")
        .policy(AuditPolicy::new().mask("iban", Mask::Last4))
        .policy(ApprovalPolicy::new(["cfo", "controller"]).named("Finance"))
        .policy(ApprovalPolicy::new(["ceo"]).named("Board"))
        .build()
        .unwrap();
    let id = park(&action, 93_231).await;
    until("the request", || target.seen.lock().unwrap().len() == 2).await;
    {
        let seen = target.seen.lock().unwrap();
        let to: Vec<_> = seen.iter().map(|s| s.2.clone().unwrap()).collect();
        assert_eq!(to, ["cfo", "controller"], "one per approver");
        let notice = &seen[0].3;
        assert_eq!(notice.kind, NotificationKind::Requested);
        assert_eq!(notice.action, "wire");
        assert_eq!(notice.requester, "agent");
        assert_eq!(notice.inputs.value()["iban"], format!("{REDACTED}3000"));
        assert!(!serde_json::to_string(notice).unwrap().contains("DE89"));
        assert!(notice.request.as_ref().unwrap().sealed_inputs.is_none());
    }
    g.approve(id, &Principal::new("cfo"), None).await.unwrap();
    until("the next stage", || target.seen.lock().unwrap().len() == 3).await;
    assert_eq!(
        target.seen.lock().unwrap()[2].1,
        NotificationKind::StageAdvanced
    );
    assert_eq!(target.seen.lock().unwrap()[2].2.as_deref(), Some("ceo"));
    g.reject(id, &Principal::new("ceo"), Some("not now"))
        .await
        .unwrap();
    until("the decision", || target.seen.lock().unwrap().len() == 4).await;
    let seen = target.seen.lock().unwrap().clone();
    assert_eq!(seen[3].1, NotificationKind::Decided);
    assert_eq!(seen[3].3.status, ExecutionStatus::Rejected);
    let stored = states(&g, id).await;
    assert_eq!(stored.len(), 4);
    assert!(
        stored
            .iter()
            .all(|(_, s, a)| *s == DeliveryState::Delivered && *a == 1),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_the_same_id_then_dead_until_retried() {
    // Two failures, then success: delivered on the third attempt.
    let flaky = Recorder {
        fail_first: 2,
        ..Recorder::default()
    };
    let g = governor(&flaky, Arc::new(MemoryStore::new()));
    let action = cfo_wire(&g);
    let id = park(&action, 10).await;
    until("a delivery after retries", || {
        flaky.seen.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
    let listed = notifications_of(&g, id).await;
    assert_eq!(
        listed[0].id,
        flaky.seen.lock().unwrap()[0].0,
        "one id across attempts"
    );
    assert_eq!(listed[0].attempts, 3);

    // Always failing: dead after max_attempts, delivered once retried.
    let down = Recorder {
        fail_first: 3,
        ..Recorder::default()
    };
    let g = governor(&down, Arc::new(MemoryStore::new()));
    let action = cfo_wire(&g);
    let id = park(&action, 10).await;
    let dead = loop {
        let dead = g
            .notifications(&NotificationQuery {
                state: Some(DeliveryState::Dead),
                ..NotificationQuery::default()
            })
            .await
            .unwrap();
        if let Some(n) = dead.into_iter().next() {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(dead.execution_id, id);
    assert_eq!(dead.attempts, 3);
    assert!(
        dead.last_error
            .as_deref()
            .unwrap()
            .contains("connection refused")
    );
    assert!(down.seen.lock().unwrap().is_empty());
    assert!(g.retry_notification(dead.id).await.unwrap().is_some());
    until("the retried delivery", || {
        down.seen.lock().unwrap().len() == 1
    })
    .await;

    // A permanent failure is dead at once.
    let refused = Recorder {
        fail_first: 1,
        permanent: true,
        ..Recorder::default()
    };
    let g = governor(&refused, Arc::new(MemoryStore::new()));
    let action = cfo_wire(&g);
    let id = park(&action, 10).await;
    for _ in 0..200 {
        if states(&g, id).await == [(NotificationKind::Requested, DeliveryState::Dead, 1)] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not dead: {:?}", states(&g, id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_delivery_loses_nothing() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // A governor without targets writes no notifications.
    let silent = Governor::builder()
        .shared_store(Arc::clone(&store))
        .build()
        .unwrap();
    let action = cfo_wire(&silent);
    let quiet = park(&action, 10).await;
    assert!(states(&silent, quiet).await.is_empty());

    // A process wrote a request and its notification, and its worker
    // claimed the notification, then died mid-send: it never records an
    // outcome. (Written and claimed through the store, as it would have.)
    let mut e = Execution::new(
        "wire".into(),
        Arc::new(Principal::new("agent")),
        Json::encode(&json!({"amount": 5})).unwrap(),
    );
    e.status = ExecutionStatus::AwaitingApproval;
    let id = e.id;
    let mut c = Creation::new(e);
    c.notifications.push(Notification::new(
        id,
        NotificationKind::Requested,
        "recorder",
        Json::encode(&json!({"status": "awaiting_approval", "at": chrono::Utc::now()})).unwrap(),
        chrono::Utc::now(),
    ));
    let written = c.notifications[0].id;
    store.create(&c).await.unwrap();
    let doomed = store
        .claim_notifications(
            "doomed-worker",
            chrono::Utc::now(),
            Duration::from_millis(300),
            100,
        )
        .await
        .unwrap();
    assert_eq!(doomed.iter().map(|n| n.id).collect::<Vec<_>>(), [written]);
    let target = Recorder::default();
    let survivor = governor(&target, Arc::clone(&store));
    survivor.spawn_delivery();
    until("the survivor's delivery", || {
        target
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.3.execution_id == id)
    })
    .await;
    let seen: Vec<_> = target
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.3.execution_id == id)
        .map(|s| s.0)
        .collect();
    assert_eq!(
        seen,
        [written],
        "delivered once, with the id it was written with"
    );
    let late = doomed[0].after(&DeliveryOutcome::Delivered, chrono::Utc::now());
    assert!(
        !store
            .finish_notification(&late, "doomed-worker", chrono::Utc::now())
            .await
            .unwrap(),
        "the dead worker's lease is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_escalation_are_told_too() {
    let target = Recorder::default();
    let g = governor(&target, Arc::new(MemoryStore::new()));
    let escalating = g
        .action("wire")
        .policy(
            ApprovalPolicy::new(["cfo"])
                .expires_in(Some(Duration::from_millis(1)))
                .on_expiry(OnExpiry::Escalate {
                    approvers: vec!["ceo".into()],
                    expires_in: Some(Duration::from_millis(1)),
                }),
        )
        .build()
        .unwrap();
    let id = park(&escalating, 10).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(g.sweep_expired().await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(g.sweep_expired().await.unwrap(), 1);
    until("three notices", || target.seen.lock().unwrap().len() == 3).await;
    let seen = target.seen.lock().unwrap().clone();
    let told: Vec<_> = seen.iter().map(|s| (s.1, s.2.clone())).collect();
    assert_eq!(
        told,
        [
            (NotificationKind::Requested, Some("cfo".to_owned())),
            (NotificationKind::Escalated, None),
            (NotificationKind::Expired, None),
        ]
    );
    assert_eq!(seen[1].3.waiting_approvers(), ["ceo"]);
    assert_eq!(seen[2].3.status, ExecutionStatus::Expired);
    assert!(seen.iter().all(|s| s.3.execution_id == id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_go_out_once_each_at_their_time_whichever_instance_sweeps() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let target = Recorder::default();
    let (a, b) = (
        governor(&target, Arc::clone(&store)),
        governor(&target, Arc::clone(&store)),
    );
    let action = a
        .action("wire")
        .policy(
            ApprovalPolicy::new(["cfo"])
                .expires_in(Some(Duration::from_secs(3)))
                .notify(NotifySpec {
                    remind_before_seconds: vec![60, 2],
                    ..NotifySpec::default()
                }),
        )
        .build()
        .unwrap();
    let id = park(&action, 5).await;
    let reminders = |g: Governor| async move {
        notifications_of(&g, id)
            .await
            .into_iter()
            .filter(|n| n.kind == NotificationKind::Reminder)
            .count()
    };
    // "60 s before" is due at once; two instances sweep together.
    let (x, y) = tokio::join!(a.sweep_expired(), b.sweep_expired());
    assert_eq!(x.unwrap() + y.unwrap(), 1, "one instance sent it");
    assert_eq!(reminders(a.clone()).await, 1);
    a.sweep_expired().await.unwrap();
    assert_eq!(reminders(a.clone()).await, 1, "not again");
    // "2 s before" comes due a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.sweep_expired().await.unwrap();
    a.sweep_expired().await.unwrap();
    assert_eq!(reminders(a.clone()).await, 2);
    let stage = &a
        .execution(id)
        .await
        .unwrap()
        .unwrap()
        .approval
        .unwrap()
        .stages[0];
    assert_eq!(stage.reminded, [60, 2]);
    until("the reminders delivered", || {
        target
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.1 == NotificationKind::Reminder)
            .count()
            == 2
    })
    .await;
    // A decided request gets no more reminders.
    let id = park(&action, 6).await;
    a.approve(id, &Principal::new("cfo"), None).await.unwrap();
    a.sweep_expired().await.unwrap();
    assert_eq!(
        notifications_of(&a, id)
            .await
            .iter()
            .filter(|n| n.kind == NotificationKind::Reminder)
            .count(),
        0
    );
}
