//! `GovernLayer` on an app's own routes, over a real socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;
use governor_core::{ApprovalPolicy, ExecutionStatus, Governor, MemoryStore, Principal};
use governor_http::{ApiKeys, EXECUTION_HEADER, GovernLayer};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct App {
    base: String,
    governor: Governor,
    paid: Arc<AtomicUsize>,
    client: reqwest::Client,
}

async fn app() -> App {
    let governor = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let paid = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&paid);
    let layer = GovernLayer::new(governor.clone())
        .authenticate_with(
            ApiKeys::new()
                .with_token("agent-token", Principal::new("agent"))
                .with_token("intern-token", Principal::new("intern")),
        )
        .policy(
            ApprovalPolicy::new(["cfo"]).auto_approve_when(|input, who| {
                who.id == "agent" && input["body"]["amount"].as_u64().is_some_and(|a| a < 1_000)
            }),
        );
    let router = Router::new()
        .route(
            "/accounts/{account}/payments",
            post(move |axum::Json(body): axum::Json<Value>| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({"paid": body["amount"]})),
                    )
                }
            }),
        )
        .route_layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    App {
        base,
        governor,
        paid,
        client: crate::client(),
    }
}

impl App {
    async fn pay(&self, token: &str, amount: u64, retry: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}/accounts/ACME-1/payments?memo=rent", self.base))
            .bearer_auth(token)
            .json(&json!({"amount": amount}));
        if let Some(id) = retry {
            req = req.header(EXECUTION_HEADER, id);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn allowed_requests_reach_the_handler_and_are_recorded() {
    let app = app().await;
    let (status, body) = app.pay("agent-token", 120, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"paid": 120}));
    assert_eq!(app.paid.load(Ordering::SeqCst), 1);
    let list = app
        .governor
        .store()
        .executions(&Default::default())
        .await
        .unwrap();
    let e = &list[0];
    assert_eq!(&*e.action, "POST /accounts/{account}/payments");
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert_eq!(e.principal.id, "agent");
    assert_eq!(
        e.inputs.value(),
        json!({"path": {"account": "ACME-1"}, "query": {"memo": "rent"}, "body": {"amount": 120}})
    );
    assert_eq!(e.output.as_ref().unwrap().value(), json!({"status": 201}));

    let res = app
        .client
        .post(format!("{}/accounts/A/payments", app.base))
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.paid.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_needing_approval_gets_202_and_runs_when_retried_after_approval() {
    let app = app().await;
    let (status, pending) = app.pay("agent-token", 50_000, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let id = pending["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(pending["poll_url"], format!("/govern/executions/{id}"));
    assert_eq!(app.paid.load(Ordering::SeqCst), 0);

    let (early, problem) = app.pay("agent-token", 50_000, Some(&id)).await;
    assert_eq!(early, StatusCode::CONFLICT, "{problem}");
    app.governor
        .approve(id.parse().unwrap(), &Principal::new("cfo"), Some("ok"))
        .await
        .unwrap();

    let (other, problem) = app.pay("agent-token", 60_000, Some(&id)).await;
    assert_eq!(other, StatusCode::CONFLICT, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:governor:problem:not-what-was-approved"
    );
    let (someone, _) = app.pay("intern-token", 50_000, Some(&id)).await;
    assert_eq!(someone, StatusCode::FORBIDDEN);

    let (status, body) = app.pay("agent-token", 50_000, Some(&id)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.paid.load(Ordering::SeqCst), 1);
    let (again, _) = app.pay("agent-token", 50_000, Some(&id)).await;
    assert_eq!(again, StatusCode::CONFLICT);
    assert_eq!(app.paid.load(Ordering::SeqCst), 1);
    let done = app
        .governor
        .execution(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);

    // The intern's small payment is not auto-approved either.
    let (status, _) = app.pay("intern-token", 10, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn policies_read_the_query_as_the_handler_does() {
    let governor = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let layer = GovernLayer::new(governor.clone())
        .authenticate_with(ApiKeys::new().with_token("agent-token", Principal::new("agent")))
        .policy(governor_core::policy_fn("no_treasury", |ctx| {
            if ctx.input["query"]["account"] == "treasury" {
                governor_core::Decision::deny("the treasury account is off limits")
            } else {
                governor_core::Decision::Allow
            }
        }));
    let router = Router::new()
        .route(
            "/transfers",
            post(
                |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move { axum::Json(json!({"from": q.get("account")})) },
            ),
        )
        .route_layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = crate::client();
    let send = |query: &'static str| {
        client
            .post(format!("{base}/transfers?{query}"))
            .bearer_auth("agent-token")
            .send()
    };
    for disguised in [
        "account=treasur%79",
        "account=%74reasury",
        "account=treasury",
    ] {
        let res = send(disguised).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{disguised}");
    }
    let res = send("account=ops+team").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"from": "ops team"})
    );
    let twice = send("account=ops&account=treasury").await.unwrap();
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let problem: Value = twice.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("`account`"));
}
