//! A governed call waits for approval; a local receiver gets the signed
//! webhooks (the request, then the decision) and verifies them the
//! Standard Webhooks way.
//!
//!     cargo run -p governor-notify --example webhook_roundtrip

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use governor_core::{ApprovalPolicy, Args, GovernError, Governor, Principal};
use governor_notify::{WebhookSecret, WebhookTarget};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Received = Arc<Mutex<Vec<String>>>;

async fn receive(State(seen): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(secret) = WebhookSecret::parse(SECRET) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let ok = secret.verify(
        h("webhook-id"),
        h("webhook-timestamp").parse().unwrap_or(0),
        h("webhook-signature"),
        &body,
        chrono::Utc::now().timestamp(),
        Duration::from_secs(300),
    );
    if !ok {
        return StatusCode::UNAUTHORIZED;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let line = format!(
        "verified {} {} for {} (status {})",
        h("webhook-id"),
        event["type"],
        event["data"]["action"],
        event["data"]["status"]
    );
    println!("{line}");
    if let Ok(mut seen) = seen.lock() {
        seen.push(line);
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen = Received::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let governor = Governor::builder()
        .deliver_to(WebhookTarget::new("ops", &url, SECRET)?)
        .build()?;
    let refund = governor
        .action("refund")
        .policy(ApprovalPolicy::new(["cfo"]))
        .build()?;
    let parked = refund
        .run_as(
            Principal::new("agent-7"),
            Args::new().arg("amount", &120),
            || async { Ok::<_, GovernError>("refunded") },
        )
        .await;
    let Err(GovernError::Pending { execution_id }) = parked else {
        return Err("the refund did not wait for approval".into());
    };
    println!("refund {execution_id} waits for the CFO");
    governor
        .approve(
            execution_id,
            &Principal::new("cfo"),
            Some("customer is right"),
        )
        .await?;
    for _ in 0..200 {
        if seen.lock().map(|s| s.len()).unwrap_or(0) >= 2 {
            println!("both webhooks arrived and verified");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("the webhooks did not arrive".into())
}
