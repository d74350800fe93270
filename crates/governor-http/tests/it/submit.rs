//! `POST /govern/executions` and the start/complete reports: governance
//! for agents that are not written in Rust.

use std::time::Duration;

use governor_core::{
    ApprovalPolicy, AuthorizationPolicy, ExecutionStatus, RateLimitPolicy, ValidationPolicy,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{AGENT, AUDITOR, CFO, OPS, RUNNER, STRANGER, Server, assert_problem};

fn configure(s: &Server) {
    let g = &s.governor;
    let minute = Duration::from_secs(60);
    g.action("lookup").external(minute).build().unwrap();
    g.action("wire")
        .policy(AuthorizationPolicy::new().require_roles(["treasury"]))
        .external(minute)
        .build()
        .unwrap();
    g.action("pay")
        .policy(
            ValidationPolicy::new()
                .input_schema(&json!({
                    "type": "object",
                    "properties": {"amount": {"type": "number", "minimum": 1}},
                    "required": ["amount"]
                }))
                .unwrap(),
        )
        .policy(RateLimitPolicy::new(2, Duration::from_secs(3600)).per_principal())
        .external(minute)
        .build()
        .unwrap();
    g.action("refund")
        .policy(ApprovalPolicy::new(["cfo"]))
        .external(minute)
        .build()
        .unwrap();
}

async fn submit(s: &Server, token: &str, body: Value) -> (StatusCode, Value) {
    s.post("/govern/executions", token, body).await
}

#[tokio::test]
async fn an_allowed_submission_runs_at_the_agent_and_its_report_completes_it() {
    let s = Server::start().await;
    configure(&s);
    let (status, admitted) = submit(
        &s,
        AGENT,
        json!({"action": "lookup", "arguments": {"q": "acme"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{admitted}");
    assert_eq!(admitted["status"], "running");
    assert_eq!(admitted["arguments"], json!({"q": "acme"}));
    let id = admitted["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        admitted["complete_url"],
        format!("/govern/executions/{id}/complete")
    );

    let complete = format!("/govern/executions/{id}/complete");
    let stranger = s.post(&complete, STRANGER, json!({"output": 1})).await;
    assert_problem(&stranger, StatusCode::NOT_FOUND, "not-found");
    for bad in [json!({}), json!({"output": 1, "error": "x"})] {
        let got = s.post(&complete, AGENT, bad).await;
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let (status, done) = s
        .post(&complete, AGENT, json!({"output": {"hits": 3}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!({"hits": 3}));
    let again = s.post(&complete, AGENT, json!({"output": null})).await;
    assert_problem(&again, StatusCode::CONFLICT, "not-running");

    let (_, detail) = s.get(&format!("/govern/executions/{id}"), AGENT).await;
    assert_eq!(detail["execution"]["principal"]["id"], "agent");

    // A reported error fails it; `null` is a valid output.
    let (_, second) = submit(&s, AGENT, json!({"action": "lookup"})).await;
    let id2 = second["execution_id"].as_str().unwrap();
    let (_, failed) = s
        .post(
            &format!("/govern/executions/{id2}/complete"),
            AGENT,
            json!({"error": "upstream timed out"}),
        )
        .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure"]["message"], "upstream timed out");
}

#[tokio::test]
async fn denials_invalid_arguments_and_rate_limits_answer_with_their_policy() {
    let s = Server::start().await;
    configure(&s);
    let denied = submit(&s, AGENT, json!({"action": "wire", "arguments": {}})).await;
    assert_problem(&denied, StatusCode::FORBIDDEN, "denied");
    assert!(denied.1["policy"].as_str().is_some_and(|p| !p.is_empty()));
    assert!(denied.1["execution_id"].is_string());

    let invalid = submit(
        &s,
        AGENT,
        json!({"action": "pay", "arguments": {"amount": 0}}),
    )
    .await;
    assert_problem(
        &invalid,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-arguments",
    );
    assert_eq!(invalid.1["errors"][0]["path"], "/amount");

    for _ in 0..2 {
        let (status, _) = submit(
            &s,
            AGENT,
            json!({"action": "pay", "arguments": {"amount": 5}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let res = s
        .raw(Method::POST, "/govern/executions")
        .bearer_auth(AGENT)
        .json(&json!({"action": "pay", "arguments": {"amount": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");

    let unknown = submit(&s, AGENT, json!({"action": "launch_missiles"})).await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "not-found");
    // Registered for resuming in Rust, not for agents to run themselves.
    let not_external = submit(&s, AGENT, json!({"action": "transfer"})).await;
    assert_problem(&not_external, StatusCode::NOT_FOUND, "not-found");
    let shape = submit(&s, AGENT, json!({"action": "lookup", "arguments": [1, 2]})).await;
    assert_problem(&shape, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // Huge waits are capped (found by schemathesis: 1.8e19 s overflowed).
    let (status, _) = submit(
        &s,
        AGENT,
        json!({"action": "lookup", "wait_seconds": 1.8446744073709552e19}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let wait = submit(&s, AGENT, json!({"action": "lookup", "wait_seconds": -1})).await;
    assert_problem(&wait, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

#[tokio::test]
async fn a_pending_submission_is_polled_approved_started_and_reported() {
    let s = Server::start().await;
    configure(&s);
    let (status, pending) = submit(
        &s,
        AGENT,
        json!({"action": "refund", "arguments": {"amount": 900}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let id = pending["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(pending["poll_url"], format!("/govern/executions/{id}"));
    let start = pending["start_url"].as_str().unwrap().to_owned();

    let early = s.send(Method::POST, &start, Some(AGENT), None).await;
    assert_problem(&early, StatusCode::CONFLICT, "not-approved");
    let (_, polled) = s.get(&format!("/govern/executions/{id}"), AGENT).await;
    assert_eq!(polled["execution"]["status"], "awaiting_approval");

    s.post(
        &format!("/govern/approvals/{id}/approve"),
        CFO,
        json!({"edits": {"amount": 500}}),
    )
    .await;
    // Starting hands over the arguments: someone who may not see the
    // execution learns nothing; an approver, a reader or a resumer who
    // may see it is still not the requester.
    let stranger = s.send(Method::POST, &start, Some(STRANGER), None).await;
    assert_problem(&stranger, StatusCode::NOT_FOUND, "not-found");
    for not_theirs in [CFO, AUDITOR, OPS] {
        let refused = s.send(Method::POST, &start, Some(not_theirs), None).await;
        assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, started) = s.send(Method::POST, &start, Some(AGENT), None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["arguments"], json!({"amount": 500}));
    let twice = s.send(Method::POST, &start, Some(AGENT), None).await;
    assert_problem(&twice, StatusCode::CONFLICT, "not-approved");
    let (_, done) = s
        .post(
            &format!("/govern/executions/{id}/complete"),
            AGENT,
            json!({"output": "refunded 500"}),
        )
        .await;
    assert_eq!(done["status"], "completed");
}

#[tokio::test]
async fn a_submission_can_hold_its_connection_for_the_decision() {
    let s = std::sync::Arc::new(Server::start().await);
    configure(&s);
    let approve_when_asked = |s: std::sync::Arc<Server>, verdict: &'static str| async move {
        loop {
            let (_, page) = s.get("/govern/approvals/pending?action=refund", CFO).await;
            if let Some(id) = page["items"][0]["execution_id"].as_str() {
                let path = format!("/govern/approvals/{id}/{verdict}");
                let (status, _) = s.post(&path, CFO, json!({"reason": "checked"})).await;
                assert_eq!(status, StatusCode::OK);
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let decider = tokio::spawn(approve_when_asked(s.clone(), "approve"));
    let (status, admitted) = submit(
        &s,
        AGENT,
        json!({"action": "refund", "arguments": {"amount": 5}, "wait_seconds": 30}),
    )
    .await;
    decider.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{admitted}");
    assert_eq!(admitted["status"], "running");

    let decider = tokio::spawn(approve_when_asked(s.clone(), "reject"));
    let rejected = submit(
        &s,
        AGENT,
        json!({"action": "refund", "arguments": {"amount": 6}, "wait_seconds": 30}),
    )
    .await;
    decider.await.unwrap();
    assert_problem(&rejected, StatusCode::FORBIDDEN, "rejected");
    assert!(rejected.1["reason"].as_str().unwrap().contains("checked"));
    let id = rejected.1["execution_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::Rejected);
}

#[tokio::test]
async fn a_runner_with_run_as_starts_for_the_requester_and_is_recorded() {
    let s = Server::start().await;
    configure(&s);
    let (status, pending) = submit(
        &s,
        AGENT,
        json!({"action": "refund", "arguments": {"amount": 70}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let id = pending["execution_id"].as_str().unwrap().to_owned();
    s.post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
        .await;
    let (status, started) = s
        .send(
            Method::POST,
            &format!("/govern/executions/{id}/start"),
            Some(RUNNER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let (_, detail) = s.get(&format!("/govern/executions/{id}"), AUDITOR).await;
    let resumed = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "execution.resumed")
        .unwrap();
    assert_eq!(
        resumed["data"]["by"], "runner",
        "who started it is recorded"
    );
}
