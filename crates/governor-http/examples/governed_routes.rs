//! An axum app whose payment route is governed by `GovernLayer`, with the
//! approval API mounted beside it: small payments go through, large ones
//! answer 202 until the CFO approves over the API, then the client retries
//! with the `Governor-Execution` header and the payment runs.
//!
//! Run: `cargo run -p governor-http --example governed_routes`

use axum::Router;
use axum::routing::post;
use governor_core::{ApprovalPolicy, Governor, Principal};
use governor_http::{ApiKeys, EXECUTION_HEADER, GovernLayer};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let governor = Governor::builder().build()?;
    let keys = ApiKeys::new()
        .with_token("agent-token", Principal::new("agent"))
        .with_token("cfo-token", Principal::new("cfo"));
    let payments = Router::new()
        .route(
            "/payments",
            post(|axum::Json(body): axum::Json<Value>| async move {
                (
                    StatusCode::CREATED,
                    axum::Json(json!({"paid": body["amount"]})),
                )
            }),
        )
        .route_layer(
            GovernLayer::new(governor.clone())
                .authenticate_with(keys.clone())
                .policy(ApprovalPolicy::new(["cfo"]).auto_approve_when(|input, _| {
                    input["body"]["amount"].as_u64().is_some_and(|a| a < 10_000)
                })),
        );
    let app = payments.merge(governor_http::api(governor, keys));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // reqwest may be built with rustls and no crypto provider (a
    // workspace build takes the CLI's features): install ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let pay = |amount: u64, retry: Option<String>| {
        let mut req = http
            .post(format!("{base}/payments"))
            .bearer_auth("agent-token")
            .json(&json!({ "amount": amount }));
        if let Some(id) = retry {
            req = req.header(EXECUTION_HEADER, id);
        }
        req.send()
    };

    let small = pay(250, None).await?;
    println!("250: {} {}", small.status(), small.text().await?);

    let large = pay(75_000, None).await?;
    println!("75000: {}", large.status());
    let pending: Value = large.json().await?;
    let id = pending["execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("  waiting for approval, poll {}", pending["poll_url"]);

    let decided = http
        .post(format!("{base}/govern/approvals/{id}/approve"))
        .bearer_auth("cfo-token")
        .json(&json!({"reason": "annual licence"}))
        .send()
        .await?;
    println!("CFO approves: {}", decided.status());

    let retried = pay(75_000, Some(id)).await?;
    println!(
        "75000 retried: {} {}",
        retried.status(),
        retried.text().await?
    );
    Ok(())
}
