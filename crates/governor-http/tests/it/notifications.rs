//! `/govern/notifications`: the outbox as operators see it.

use std::time::Duration;

use async_trait::async_trait;
use governor_core::{DeliveryError, DeliveryTarget, Governor, Notification, RetryPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{AGENT, AUDITOR, CFO, OPS, READER_B, STRANGER, Server, assert_problem};

/// Fails every delivery for good: each notification is dead at once.
struct Down;

#[async_trait]
impl DeliveryTarget for Down {
    fn name(&self) -> &str {
        "pager"
    }
    async fn deliver(&self, _: &Governor, _: &Notification) -> Result<(), DeliveryError> {
        Err(DeliveryError::permanent(
            "pager service says: unknown account",
        ))
    }
}

async fn dead_of(s: &Server, id: &str) -> Value {
    for _ in 0..300 {
        let (status, page) = s
            .get(
                &format!("/govern/notifications?execution_id={id}&state=dead"),
                CFO,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if let Some(n) = page["items"].as_array().and_then(|i| i.first()) {
            return n.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no dead notification for {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_deliveries_and_send_a_dead_one_again() {
    let s = Server::start_with(|b| {
        b.deliver_to(Down).retry_policy(RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        })
    })
    .await;
    let id = s.park(500).await.to_string();
    // An approver of the request sees its deliveries.
    let dead = dead_of(&s, &id).await;
    assert_eq!(dead["kind"], "requested");
    assert_eq!(dead["target"], "pager");
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("unknown account")
    );
    assert!(dead.get("payload").is_none(), "listings carry no payload");

    // Readers list every one; others only an execution they may see.
    let (status, all) = s.get("/govern/notifications?state=dead", AUDITOR).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    let refused = s.get("/govern/notifications", AGENT).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    let hidden = s
        .get(
            &format!("/govern/notifications?execution_id={id}"),
            STRANGER,
        )
        .await;
    assert!(
        hidden.0 == StatusCode::NOT_FOUND || hidden.0 == StatusCode::FORBIDDEN,
        "{hidden:?}"
    );
    let (_, other_tenant) = s.get("/govern/notifications", READER_B).await;
    assert_eq!(other_tenant["items"], json!([]));
    let bad = s.get("/govern/notifications?state=lost", AUDITOR).await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "bad-request");

    // Retrying takes governor:resume; it makes the notification pending
    // again (and it fails again, for good, here).
    let nid = dead["id"].as_str().unwrap();
    let path = format!("/govern/notifications/{nid}/retry");
    let refused = s.post(&path, CFO, json!({})).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    let (status, retried) = s.post(&path, OPS, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["state"], "pending");
    let again = dead_of(&s, &id).await;
    assert_eq!(again["attempts"], 2);
    let missing = s
        .post(
            "/govern/notifications/01a25225-1954-7000-a5fb-37d244598de0/retry",
            OPS,
            json!({}),
        )
        .await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not-found");
}
