//! Webhooks against a local receiver that verifies them as a Standard
//! Webhooks library would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use governor_core::*;
use governor_notify::{WebhookSecret, WebhookTarget};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Clone, Default)]
struct Receiver {
    /// (webhook-id, verified, body) of every request.
    got: Arc<Mutex<Vec<(String, bool, Value)>>>,
    /// Answers, in order; then 204.
    answers: Arc<Mutex<Vec<StatusCode>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let id = h("webhook-id");
    let timestamp: i64 = h("webhook-timestamp").parse().unwrap_or(0);
    let verified = WebhookSecret::parse(SECRET).unwrap().verify(
        &id,
        timestamp,
        &h("webhook-signature"),
        &body,
        chrono::Utc::now().timestamp(),
        Duration::from_secs(300),
    );
    r.got.lock().unwrap().push((
        id,
        verified,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ));
    let mut answers = r.answers.lock().unwrap();
    if answers.is_empty() {
        StatusCode::NO_CONTENT
    } else {
        answers.remove(0)
    }
}

async fn start(receiver: Receiver) -> String {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn governor(url: &str) -> Governor {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Governor::builder()
        .deliver_to(WebhookTarget::new("ops", url, SECRET).unwrap())
        .retry_policy(RetryPolicy {
            max_attempts: 4,
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(40),
            lease: Duration::from_secs(5),
        })
        .build()
        .unwrap()
}

async fn park(g: &Governor) -> ExecutionId {
    let action = g
        .action("wire")
        .policy(AuditPolicy::new().sensitive_fields(["iban"]))
        .policy(ApprovalPolicy::new(["cfo"]))
        .build()
        .unwrap();
    match action
        .run_as(
            Principal::new("agent"),
            Args::new()
                .arg("amount", &500)
                .arg("iban", &"DE89370400440532013000"),
            || async { Ok::<_, GovernError>(json!(1)) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("{other:?}"),
    }
}

async fn until(r: &Receiver, n: usize) {
    for _ in 0..500 {
        if r.got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the receiver got {} requests, not {n}",
        r.got.lock().unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_verifies_each_webhook_and_retries_keep_the_id() {
    let receiver = Receiver::default();
    receiver.answers.lock().unwrap().extend([
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ]);
    let g = governor(&start(receiver.clone()).await);
    let id = park(&g).await;
    until(&receiver, 3).await;
    g.approve(id, &Principal::new("cfo"), Some("ok"))
        .await
        .unwrap();
    until(&receiver, 4).await;
    let got = receiver.got.lock().unwrap().clone();
    assert!(
        got.iter().all(|(_, verified, _)| *verified),
        "every signature verifies"
    );
    assert_eq!(got[0].0, got[2].0, "retries carry the same webhook-id");
    assert_ne!(got[2].0, got[3].0);
    let requested = &got[2].2;
    assert_eq!(requested["type"], "approval.requested");
    assert_eq!(requested["data"]["execution_id"], id.to_string());
    assert_eq!(requested["data"]["action"], "wire");
    assert_eq!(requested["data"]["inputs"]["iban"], REDACTED);
    assert!(!requested.to_string().contains("DE89"));
    assert_eq!(got[3].2["type"], "approval.decided");
    assert_eq!(got[3].2["data"]["status"], "approved");
    let stored = g
        .notifications(&NotificationQuery {
            execution_id: Some(id),
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|n| (n.state, n.attempts))
            .collect::<Vec<_>>(),
        [(DeliveryState::Delivered, 3), (DeliveryState::Delivered, 1)]
    );
    assert_eq!(stored[0].id.to_string(), got[0].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_dead_at_once_and_an_unreachable_receiver_is_retried() {
    let receiver = Receiver::default();
    receiver.answers.lock().unwrap().push(StatusCode::GONE);
    let g = governor(&start(receiver.clone()).await);
    let id = park(&g).await;
    until(&receiver, 1).await;
    let dead = loop {
        let n = g
            .notifications(&NotificationQuery {
                execution_id: Some(id),
                ..NotificationQuery::default()
            })
            .await
            .unwrap();
        if n[0].state == DeliveryState::Dead {
            break n[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(dead.attempts, 1);
    assert!(dead.last_error.unwrap().contains("410"));

    // Nobody listening: retried until max_attempts, then dead.
    let g = governor("http://127.0.0.1:9/hook");
    let id = park(&g).await;
    for _ in 0..500 {
        let n = g
            .notifications(&NotificationQuery {
                execution_id: Some(id),
                ..NotificationQuery::default()
            })
            .await
            .unwrap();
        if n[0].state == DeliveryState::Dead {
            assert_eq!(n[0].attempts, 4);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never dead");
}
