//! Black-box tests of the HTTP API over a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
#[cfg(feature = "dashboard")]
mod dashboard;
mod events;
mod executions;
#[cfg(feature = "jwt")]
mod jwt;
mod layer;
mod limits;
#[cfg(feature = "dashboard")]
mod links;
mod notifications;
mod operations;
mod submit;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor_core::{
    Action, ApprovalPolicy, Args, ExecutionId, GovernError, Governor, MemoryStore, Principal,
};
use governor_http::{ApiKeys, READ_PERMISSION, RESUME_PERMISSION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A server on an ephemeral port over a memory-store governor, with one
/// token per kind of caller.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) governor: Governor,
    pub(crate) transfer: Action,
    /// How often the transfer's body ran.
    pub(crate) runs: Arc<AtomicUsize>,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Tokens: the CFO approves transfers; the agent makes them; the auditor
/// reads everything; ops may also resume; the stranger is nobody.
pub(crate) const CFO: &str = "cfo-token";
pub(crate) const AGENT: &str = "agent-token";
pub(crate) const AUDITOR: &str = "auditor-token";
pub(crate) const OPS: &str = "ops-token";
pub(crate) const STRANGER: &str = "stranger-token";
pub(crate) const PAUSER: &str = "pauser-token";
pub(crate) const RUNNER: &str = "runner-token";
/// Tokens of the same principal ids in tenants A and B, and a reader of
/// tenant B.
pub(crate) const AGENT_A: &str = "agent-a-token";
pub(crate) const AGENT_B: &str = "agent-b-token";
pub(crate) const READER_B: &str = "reader-b-token";
pub(crate) const READER_ALL: &str = "reader-all-token";

impl Server {
    pub(crate) async fn start() -> Self {
        Self::start_with(|b| b).await
    }

    /// [`Server::start`] with more governor settings (delivery targets).
    pub(crate) async fn start_with(
        configure: impl FnOnce(governor_core::GovernorBuilder) -> governor_core::GovernorBuilder,
    ) -> Self {
        let governor = configure(
            Governor::builder()
                .store(MemoryStore::new())
                .seal_key(governor_core::SealKey::from_bytes([4; 32])),
        )
        .build()
        .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let transfer = governor
            .action("transfer")
            .policy(ApprovalPolicy::new(["cfo", "role:treasury"]))
            .resumable(move |args: Value| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, GovernError>(json!({ "sent": args["amount"] }))
                }
            })
            .build()
            .unwrap();
        let keys = ApiKeys::new()
            .with_token(
                CFO,
                Principal::new("cfo").with_attribute("email", "cfo@example.com"),
            )
            .with_token(AGENT, Principal::new("agent"))
            .with_token(
                AUDITOR,
                Principal::new("auditor").with_permissions([READ_PERMISSION]),
            )
            .with_token(
                OPS,
                Principal::new("ops").with_permissions([READ_PERMISSION, RESUME_PERMISSION]),
            )
            .with_token(STRANGER, Principal::new("stranger"))
            .with_token(
                PAUSER,
                Principal::new("pauser").with_permissions([governor_core::PAUSE_PERMISSION]),
            )
            .with_token(
                RUNNER,
                Principal::new("runner").with_permissions([governor_http::RUN_AS_PERMISSION]),
            )
            .with_token(AGENT_A, Principal::new("agent-1").with_tenant("A"))
            .with_token(AGENT_B, Principal::new("agent-1").with_tenant("B"))
            .with_token(
                READER_B,
                Principal::new("auditor-b")
                    .with_tenant("B")
                    .with_permissions([READ_PERMISSION]),
            )
            .with_token(
                READER_ALL,
                Principal::new("auditor-all")
                    .with_tenant("B")
                    .with_permissions([READ_PERMISSION, governor_http::CROSS_TENANT_PERMISSION]),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = governor_http::api(governor.clone(), keys);
        tokio::spawn(governor_http::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Self {
            base,
            governor,
            transfer,
            runs,
            client: client(),
            shutdown: Some(tx),
        }
    }

    /// A transfer by the agent, parked for approval; its id.
    pub(crate) async fn park(&self, amount: u64) -> ExecutionId {
        self.park_as(Principal::new("agent"), amount).await
    }

    pub(crate) async fn park_as(&self, who: Principal, amount: u64) -> ExecutionId {
        let err = self
            .transfer
            .run_as(who, Args::new().arg("amount", &amount), || async {
                Ok::<_, GovernError>(json!("ran in place"))
            })
            .await
            .unwrap_err();
        match err {
            GovernError::Pending { execution_id } => execution_id,
            other => panic!("expected a parked call, got {other}"),
        }
    }

    /// Sends a request; answers status and JSON body (`Null` when empty).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = res.text().await.unwrap();
        if !status.is_success() {
            assert_eq!(content_type, "application/problem+json", "{status}: {text}");
        }
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    /// A raw request for bodies `send` cannot make.
    pub(crate) fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts a problem document of `status` whose `type` ends in `kind`.
pub(crate) fn assert_problem(got: &(StatusCode, Value), status: StatusCode, kind: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], status.as_u16(), "{}", got.1);
    assert_eq!(
        got.1["type"],
        format!("urn:governor:problem:{kind}"),
        "{}",
        got.1
    );
    assert!(got.1["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn probes_answer_without_a_token_and_unknown_routes_are_problems() {
    let s = Server::start().await;
    let ok = s.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(ok, (StatusCode::OK, json!({"status": "ok"})));
    let ready = s.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready, (StatusCode::OK, json!({"status": "ready"})));
    let missing = s.get("/govern/nothing", CFO).await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not-found");
    let wrong_method = s.get("/govern/approvals/x/approve", CFO).await;
    assert_problem(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
}

#[tokio::test]
async fn every_govern_route_refuses_missing_and_unknown_tokens() {
    let s = Server::start().await;
    let id = s.park(10).await;
    let routes = [
        (Method::GET, "/govern/approvals/pending".to_owned()),
        (Method::GET, format!("/govern/approvals/{id}")),
        (Method::POST, format!("/govern/approvals/{id}/approve")),
        (Method::POST, format!("/govern/approvals/{id}/reject")),
        (Method::GET, "/govern/executions".to_owned()),
        (Method::GET, format!("/govern/executions/{id}")),
        (Method::POST, format!("/govern/executions/{id}/resume")),
    ];
    for (method, path) in routes {
        for token in [None, Some("not-a-token")] {
            let got = s.send(method.clone(), &path, token, None).await;
            assert_problem(&got, StatusCode::UNAUTHORIZED, "unauthenticated");
        }
        // Identity never comes from another header.
        let res = s
            .raw(method.clone(), &path)
            .header("x-user", "cfo")
            .header("authorization", "Basic Y2ZvOmNmbw==")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(res.headers().contains_key("www-authenticate"));
    }
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert!(stored.approval.unwrap().stages[0].decisions.is_empty());
}

#[tokio::test]
async fn metrics_count_requests_by_route_for_token_holders() {
    let s = Server::start().await;
    s.park(1).await;
    s.park(2).await;
    let id = s.park(3).await;
    s.get(&format!("/govern/approvals/{id}"), CFO).await;
    s.get("/govern/approvals/pending", STRANGER).await;
    s.post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
        .await;
    s.post("/govern/executions", AGENT, json!({"action": "nope"}))
        .await;
    let anonymous = s.send(Method::GET, "/metrics", None, None).await;
    assert_problem(&anonymous, StatusCode::UNAUTHORIZED, "unauthenticated");
    let res = s
        .raw(Method::GET, "/metrics")
        .bearer_auth(STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for line in [
        "governor_http_requests_total{method=\"GET\",route=\"/govern/approvals/{id}\",status=\"200\"} 1",
        "governor_http_requests_total{method=\"GET\",route=\"/govern/approvals/pending\",status=\"200\"} 1",
        "governor_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 1",
        "governor_approvals_pending 2",
        "governor_decisions_total{verdict=\"approve\"} 1",
        "governor_submissions_total{outcome=\"not-found\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_and_lists_every_route() {
    let s = Server::start().await;
    let (status, doc) = s
        .send(Method::GET, "/govern/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/govern/events",
        "/govern/approvals/pending",
        "/govern/approvals/{id}",
        "/govern/approvals/{id}/approve",
        "/govern/approvals/{id}/reject",
        "/govern/executions",
        "/govern/executions/{id}",
        "/govern/executions/{id}/resume",
        "/govern/executions/{id}/start",
        "/govern/executions/{id}/complete",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    // Every `$ref` resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}

#[test]
fn the_served_document_is_the_generated_one() {
    let dir = std::env::temp_dir().join(format!("governor-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("openapi.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/generate.py");
    let status = std::process::Command::new("python3")
        .arg(script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let generated = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        generated == governor_http::OPENAPI_JSON,
        "src/openapi.json is stale: run `python3 crates/governor-http/openapi/generate.py`"
    );
}

#[tokio::test]
async fn browsers_elsewhere_are_refused_unless_their_origin_is_configured() {
    let governor = Governor::builder().build().unwrap();
    let keys = || ApiKeys::new().with_token(CFO, Principal::new("cfo"));
    let serve = |state: governor_http::ApiState| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, governor_http::router(state)).into_future());
        base
    };
    let preflight = |base: String, origin: &'static str| async move {
        client()
            .request(
                Method::OPTIONS,
                format!("{base}/govern/approvals/x/approve"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap()
    };
    let closed = serve(governor_http::ApiState::new(governor.clone(), keys())).await;
    let res = preflight(closed, "https://evil.example").await;
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let state = governor_http::ApiState::new(governor, keys())
        .allow_origins(["https://ops.example.com"])
        .unwrap();
    let open = serve(state).await;
    let ok = preflight(open.clone(), "https://ops.example.com").await;
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://ops.example.com"
    );
    let other = preflight(open, "https://evil.example").await;
    assert!(!other.headers().contains_key("access-control-allow-origin"));

    for bad in ["*", "ops.example.com", "https://ops.example.com/"] {
        let err = governor_http::ApiState::new(Governor::builder().build().unwrap(), keys())
            .allow_origins([bad])
            .unwrap_err();
        assert!(err.detail.contains(bad), "{err}");
    }
}

/// An HTTP client. A workspace build gives reqwest the CLI's rustls
/// without a crypto provider; the tests install ring's (once).
pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
