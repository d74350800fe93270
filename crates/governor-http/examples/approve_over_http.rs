//! An approval decided over HTTP: an agent's large transfer waits, the CFO
//! lists pending approvals and approves with a bearer token, and the
//! transfer runs.
//!
//! Run: `cargo run -p governor-http --example approve_over_http`

use std::time::Duration;

use governor_core::{ApprovalPolicy, Args, GovernError, Governor, Principal};
use governor_http::{ApiKeys, READ_PERMISSION};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let governor = Governor::builder().build()?;
    let transfer = governor
        .action("transfer_funds")
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::from_secs(30)))
        .build()?;

    // Tokens are hashed on the way in; configure `hash_token(..)` output in
    // a real deployment instead of the token itself.
    let keys = ApiKeys::new().with_token(
        "cfo-secret",
        Principal::new("cfo").with_permissions([READ_PERMISSION]),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(governor_http::serve(
        listener,
        governor_http::api(governor.clone(), keys),
        async move {
            let _ = stopped.await;
        },
    ));
    println!("approval API on {base}");

    // The agent's call waits (sync pattern) for up to 30 s.
    let call = tokio::spawn(async move {
        transfer
            .run_as(
                Principal::new("agent-7"),
                Args::new()
                    .arg("amount", &250_000u64)
                    .arg("to", &"ACME Ltd"),
                || async { Ok::<_, GovernError>(json!({"wired": 250_000})) },
            )
            .await
    });

    // reqwest may be built with rustls and no crypto provider (a
    // workspace build takes the CLI's features): install ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let pending = loop {
        let page: Value = http
            .get(format!("{base}/govern/approvals/pending?decidable=true"))
            .bearer_auth("cfo-secret")
            .send()
            .await?
            .json()
            .await?;
        if let Some(first) = page["items"].get(0) {
            break first.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "pending: {} {} asked by {}",
        pending["action"], pending["inputs"], pending["requester"]
    );

    let id = pending["execution_id"].as_str().unwrap_or_default();
    let decided: Value = http
        .post(format!("{base}/govern/approvals/{id}/approve"))
        .bearer_auth("cfo-secret")
        .json(&json!({"reason": "quarterly supplier payment"}))
        .send()
        .await?
        .json()
        .await?;
    println!("decision recorded: {}", decided["status"]);

    let result = call.await??;
    println!("the agent's call continued: {result}");

    // Without a token nothing is decided.
    let anonymous = http
        .post(format!("{base}/govern/approvals/{id}/reject"))
        .send()
        .await?;
    println!("an anonymous rejection: {}", anonymous.status());

    let _ = stop.send(());
    server.await??;
    Ok(())
}
