//! Conformance of the notification outbox: written with the change that
//! causes it, claimed with leases, finished only by the lease holder,
//! retried when dead.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::execution::ExecutionStatus;
use crate::json::Json;
use crate::outbox::{
    DeliveryOutcome, DeliveryState, Notification, NotificationKind, NotificationQuery,
};
use crate::store::{Creation, Store, Transition};

fn notice(e: crate::ExecutionId, kind: NotificationKind, target: &str) -> Notification {
    Notification::new(
        e,
        kind,
        target,
        Json::encode(&json!({"action": "pay", "amount": 10})).unwrap(),
        Utc::now(),
    )
    .to("cfo@example.com")
}

fn of(store_list: &[Notification]) -> Vec<(NotificationKind, String)> {
    store_list
        .iter()
        .map(|n| (n.kind, n.target.clone()))
        .collect()
}

/// Notifications are stored with the creation or transition that carries
/// them, and a write that fails stores none.
pub async fn outbox_is_written_with_its_change(store: Arc<dyn Store>) {
    let e = super::execution("pay", "agent");
    let mut c = Creation::new(e.clone());
    c.execution.status = ExecutionStatus::AwaitingApproval;
    c.notifications
        .push(notice(e.id, NotificationKind::Requested, "email"));
    store.create(&c).await.unwrap();

    let mut lost = Transition::new(e.id, ExecutionStatus::Running, ExecutionStatus::Completed);
    lost.notifications
        .push(notice(e.id, NotificationKind::Decided, "email"));
    assert!(store.transition(&lost).await.is_err(), "not running");

    // A reminder: the status stays, the version moves, one writer wins.
    let version = store.execution(e.id).await.unwrap().unwrap().version;
    let remind = || {
        let mut t = Transition::new(
            e.id,
            ExecutionStatus::AwaitingApproval,
            ExecutionStatus::AwaitingApproval,
        );
        t.expect_version = Some(version);
        t.notifications
            .push(notice(e.id, NotificationKind::Reminder, "email"));
        t
    };
    store.transition(&remind()).await.unwrap();
    assert!(
        store.transition(&remind()).await.is_err(),
        "a second reminder from the same version conflicts"
    );

    let mut decided = Transition::new(
        e.id,
        ExecutionStatus::AwaitingApproval,
        ExecutionStatus::Rejected,
    );
    decided
        .notifications
        .push(notice(e.id, NotificationKind::Decided, "email"));
    decided
        .notifications
        .push(notice(e.id, NotificationKind::Decided, "webhook:ops"));
    store.transition(&decided).await.unwrap();

    let listed = store
        .notifications(&NotificationQuery {
            execution_id: Some(e.id),
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        of(&listed),
        [
            (NotificationKind::Requested, "email".to_owned()),
            (NotificationKind::Reminder, "email".to_owned()),
            (NotificationKind::Decided, "email".to_owned()),
            (NotificationKind::Decided, "webhook:ops".to_owned()),
        ]
    );
    let first = &listed[0];
    assert_eq!(first, &c.notifications[0], "stored as written");
    assert_eq!(first.recipient.as_deref(), Some("cfo@example.com"));
    assert_eq!(first.payload.value()["amount"], 10);
    assert_eq!(first.state, DeliveryState::Pending);

    let other = super::created(&store, "pay", "agent").await;
    let none = store
        .notifications(&NotificationQuery {
            execution_id: Some(other.id),
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Claims lease due notifications to one worker at a time; only the
/// holder finishes them; a lapsed lease passes to another worker; a
/// retry waits until it is due; a dead one is listed and can be retried.
pub async fn outbox_claims_are_leased_and_finished_by_their_holder(store: Arc<dyn Store>) {
    let e = super::created(&store, "pay", "agent").await;
    let mut t = Transition::new(e.id, ExecutionStatus::Pending, ExecutionStatus::Running);
    let n = notice(e.id, NotificationKind::Requested, "slack");
    t.notifications.push(n.clone());
    store.transition(&t).await.unwrap();
    let now = Utc::now();
    let minute = Duration::from_secs(60);

    let a = store
        .claim_notifications("a", now, minute, 10)
        .await
        .unwrap();
    let a: Vec<_> = a.into_iter().filter(|x| x.id == n.id).collect();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].lease.as_ref().unwrap().owner, "a");
    let b = store
        .claim_notifications("b", now, minute, 10)
        .await
        .unwrap();
    assert!(b.iter().all(|x| x.id != n.id), "leased to a");

    // Only the holder records an attempt.
    let failed = a[0].after(
        &DeliveryOutcome::Retry {
            at: now + chrono::Duration::seconds(30),
            error: "502 from slack".into(),
        },
        now,
    );
    assert!(!store.finish_notification(&failed, "b", now).await.unwrap());
    assert!(store.finish_notification(&failed, "a", now).await.unwrap());
    let stored = list_one(&store, &n).await;
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.last_error.as_deref(), Some("502 from slack"));
    assert_eq!(stored.lease, None);
    assert!(
        !store.finish_notification(&failed, "a", now).await.unwrap(),
        "lease released"
    );

    // Not due yet; due later.
    let early = store
        .claim_notifications("b", now, minute, 10)
        .await
        .unwrap();
    assert!(early.iter().all(|x| x.id != n.id));
    let later = now + chrono::Duration::seconds(31);
    let short = Duration::from_secs(5);
    let b = store
        .claim_notifications("b", later, short, 10)
        .await
        .unwrap();
    let b: Vec<_> = b.into_iter().filter(|x| x.id == n.id).collect();
    assert_eq!(b.len(), 1);

    // b's lease lapses (a worker killed mid-delivery): c takes it over,
    // and b can no longer record anything.
    let lapsed = later + chrono::Duration::seconds(6);
    let c = store
        .claim_notifications("c", lapsed, minute, 10)
        .await
        .unwrap();
    let c: Vec<_> = c.into_iter().filter(|x| x.id == n.id).collect();
    assert_eq!(c.len(), 1);
    let late = b[0].after(&DeliveryOutcome::Delivered, lapsed);
    assert!(!store.finish_notification(&late, "b", lapsed).await.unwrap());

    let dead = c[0].after(
        &DeliveryOutcome::Dead {
            error: "gave up".into(),
        },
        lapsed,
    );
    assert!(store.finish_notification(&dead, "c", lapsed).await.unwrap());
    let listed = store
        .notifications(&NotificationQuery {
            state: Some(DeliveryState::Dead),
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    // b's attempt never finished: attempts count the recorded ones.
    assert!(listed.iter().any(|x| x.id == n.id && x.attempts == 2));
    assert!(
        store
            .retry_notification(uuid::Uuid::now_v7(), lapsed)
            .await
            .unwrap()
            .is_none()
    );
    let revived = store
        .retry_notification(n.id, lapsed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revived.state, DeliveryState::Pending);
    assert!(
        store
            .retry_notification(n.id, lapsed)
            .await
            .unwrap()
            .is_none(),
        "no longer dead"
    );

    let d = store
        .claim_notifications("d", lapsed, minute, 10)
        .await
        .unwrap();
    let d: Vec<_> = d.into_iter().filter(|x| x.id == n.id).collect();
    assert_eq!(d.len(), 1);
    let mut done = d[0].after(&DeliveryOutcome::Delivered, lapsed);
    done.receipt = Some("C042:1700000000.000100".into());
    assert!(store.finish_notification(&done, "d", lapsed).await.unwrap());
    let stored = list_one(&store, &n).await;
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert_eq!(
        stored.receipt.as_deref(),
        Some("C042:1700000000.000100"),
        "the receipt is kept"
    );
    assert_eq!(stored.attempts, 3);
    assert!(stored.delivered_at.is_some());
    let never = store
        .claim_notifications("e", lapsed + chrono::Duration::days(1), minute, 10)
        .await
        .unwrap();
    assert!(
        never.iter().all(|x| x.id != n.id),
        "delivered ones are never claimed"
    );
}

async fn list_one(store: &Arc<dyn Store>, n: &Notification) -> Notification {
    store
        .notifications(&NotificationQuery {
            execution_id: Some(n.execution_id),
            ..NotificationQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == n.id)
        .unwrap()
}

/// Workers claiming at once never get the same notification, and the
/// oldest come first.
pub async fn outbox_concurrent_claims_are_disjoint(store: Arc<dyn Store>) {
    let e = super::created(&store, "pay", "agent").await;
    let mut t = Transition::new(e.id, ExecutionStatus::Pending, ExecutionStatus::Running);
    for i in 0..40 {
        t.notifications.push(notice(
            e.id,
            NotificationKind::Requested,
            &format!("hook-{i}"),
        ));
    }
    let ids: Vec<uuid::Uuid> = t.notifications.iter().map(|n| n.id).collect();
    store.transition(&t).await.unwrap();
    let now = Utc::now() + chrono::Duration::seconds(1);
    let claims = (0..4).map(|w| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store
                    .claim_notifications(&format!("w{w}"), now, Duration::from_secs(60), 3)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|n| n.id));
            }
        })
    });
    let mut all = Vec::new();
    for c in claims {
        all.extend(c.await.unwrap());
    }
    let mut ours: Vec<_> = all.iter().filter(|id| ids.contains(id)).copied().collect();
    let claimed = ours.len();
    ours.sort();
    ours.dedup();
    assert_eq!(ours.len(), claimed, "no notification was claimed twice");
    assert_eq!(ours.len(), ids.len(), "every one was claimed");

    // Paging by cursor, oldest first.
    let first = store
        .notifications(&NotificationQuery {
            execution_id: Some(e.id),
            limit: 10,
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(first.iter().map(|n| n.id).collect::<Vec<_>>(), ids[..10]);
    let next = store
        .notifications(&NotificationQuery {
            execution_id: Some(e.id),
            after: Some(first[9].id),
            limit: 10,
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(next.iter().map(|n| n.id).collect::<Vec<_>>(), ids[10..20]);
}
