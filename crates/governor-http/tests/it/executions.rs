//! `/govern/executions`.

use std::sync::atomic::Ordering;

use governor_core::{Args, GovernError, Principal};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    AGENT, AGENT_A, AGENT_B, AUDITOR, CFO, OPS, READER_ALL, READER_B, STRANGER, Server,
    assert_problem,
};

#[tokio::test]
async fn listings_filter_by_status_action_principal_and_time() {
    let s = Server::start().await;
    let parked = s.park(10).await;
    let plain = s.governor.action("lookup").build().unwrap();
    for who in ["agent", "other"] {
        plain
            .run_as(Principal::new(who), Args::new().arg("q", &"x"), || async {
                Ok::<_, GovernError>(json!(1))
            })
            .await
            .unwrap();
    }

    let (status, all) = s.get("/govern/executions", AUDITOR).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let (_, done) = s.get("/govern/executions?status=completed", AUDITOR).await;
    assert_eq!(done["items"].as_array().unwrap().len(), 2);
    let (_, waiting) = s
        .get(
            "/govern/executions?status=awaiting_approval,approved",
            AUDITOR,
        )
        .await;
    assert_eq!(waiting["items"][0]["id"], parked.to_string());
    let (_, by_action) = s.get("/govern/executions?action=transfer", AUDITOR).await;
    assert_eq!(by_action["items"].as_array().unwrap().len(), 1);
    let (_, other) = s.get("/govern/executions?principal=other", AUDITOR).await;
    assert_eq!(other["items"].as_array().unwrap().len(), 1);
    let (_, future) = s
        .get("/govern/executions?since=2999-01-01T00:00:00Z", AUDITOR)
        .await;
    assert_eq!(future["items"].as_array().unwrap().len(), 0);
    let (_, page) = s.get("/govern/executions?limit=2", AUDITOR).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = s
        .get(
            &format!("/govern/executions?limit=2&cursor={cursor}"),
            AUDITOR,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);

    // Without the read permission: one's own calls (and those one is asked
    // to decide) only; another's are not listed.
    let (_, mine) = s.get("/govern/executions", AGENT).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 2);
    let (status, theirs) = s.get("/govern/executions?principal=other", AGENT).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(theirs["items"], serde_json::json!([]));

    for bad in ["status=sleeping", "since=yesterday", "limit=-3"] {
        let got = s.get(&format!("/govern/executions?{bad}"), AUDITOR).await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "bad-request");
    }
}

#[tokio::test]
async fn an_execution_shows_its_timeline_to_those_who_may_see_it() {
    let s = Server::start().await;
    let plain = s.governor.action("lookup").build().unwrap();
    plain
        .run_as(
            Principal::new("agent"),
            Args::new().arg("q", &"x"),
            || async { Ok::<_, GovernError>(json!({"found": true})) },
        )
        .await
        .unwrap();
    let (_, list) = s.get("/govern/executions?action=lookup", AUDITOR).await;
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();

    let (status, detail) = s.get(&format!("/govern/executions/{id}"), AUDITOR).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["execution"]["status"], "completed");
    assert_eq!(detail["execution"]["output"], json!({"found": true}));
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"execution.started"));
    assert_eq!(kinds.last(), Some(&"execution.completed"));
    assert_eq!(detail["snapshots"].as_array().unwrap().len(), 2);

    let (status, _) = s.get(&format!("/govern/executions/{id}"), AGENT).await;
    assert_eq!(status, StatusCode::OK);
    let stranger = s.get(&format!("/govern/executions/{id}"), STRANGER).await;
    assert_problem(&stranger, StatusCode::NOT_FOUND, "not-found");
    let missing = s
        .get(
            "/govern/executions/01890a5d-ac96-774b-bcce-b302099a8057",
            AUDITOR,
        )
        .await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn resuming_needs_the_permission_and_an_approved_execution() {
    let s = Server::start().await;
    let id = s.park(70).await;
    let path = format!("/govern/executions/{id}/resume");
    let early = s.send(Method::POST, &path, Some(OPS), None).await;
    assert_problem(&early, StatusCode::CONFLICT, "not-approved");
    s.post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
        .await;
    for token in [CFO, AGENT, AUDITOR] {
        let denied = s.send(Method::POST, &path, Some(token), None).await;
        assert_problem(&denied, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(s.runs.load(Ordering::SeqCst), 0);
    let (status, done) = s.send(Method::POST, &path, Some(OPS), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!({"sent": 70}));
    assert_eq!(s.runs.load(Ordering::SeqCst), 1);
    let twice = s.send(Method::POST, &path, Some(OPS), None).await;
    assert_problem(&twice, StatusCode::CONFLICT, "not-approved");
}

#[tokio::test]
async fn tenants_see_and_run_only_their_own() {
    let s = Server::start().await;
    // agent-1 of tenant A asks for a transfer.
    let a = s
        .park_as(Principal::new("agent-1").with_tenant("A"), 10)
        .await;
    // The same id in tenant B is someone else: it does not exist for them.
    let theirs = s.get(&format!("/govern/executions/{a}"), AGENT_B).await;
    assert_problem(&theirs, StatusCode::NOT_FOUND, "not-found");
    let start = s
        .send(
            Method::POST,
            &format!("/govern/executions/{a}/start"),
            Some(AGENT_B),
            None,
        )
        .await;
    assert_problem(&start, StatusCode::NOT_FOUND, "not-found");
    let (status, _) = s.get(&format!("/govern/executions/{a}"), AGENT_A).await;
    assert_eq!(status, StatusCode::OK);
    // A reader's permission stops at their tenant, unless marked
    // cross-tenant.
    let reader = s.get(&format!("/govern/executions/{a}"), READER_B).await;
    assert_problem(&reader, StatusCode::NOT_FOUND, "not-found");
    let (_, listed) = s.get("/govern/executions", READER_B).await;
    assert_eq!(listed["items"], json!([]));
    let (_, pending) = s.get("/govern/approvals/pending", READER_B).await;
    assert_eq!(pending["items"], json!([]));
    let (status, _) = s.get(&format!("/govern/executions/{a}"), READER_ALL).await;
    assert_eq!(status, StatusCode::OK);
    let (_, mine) = s.get("/govern/executions", AGENT_B).await;
    assert_eq!(mine["items"], json!([]), "tenant B's agent-1 made no call");
}

#[tokio::test]
async fn a_listing_reads_a_bounded_number_of_rows_and_answers_with_a_cursor() {
    let s = Server::start().await;
    // The agent's request, then 6,000 of someone else's it may not see.
    let mine = s.park(1).await;
    for n in 0..6_000 {
        s.park_as(Principal::new("other"), n).await;
    }
    // The first page stops reading early and says where to go on;
    // following the cursor reaches the agent's request.
    let path = "/govern/approvals/pending?limit=10";
    let (status, page) = s.get(path, AGENT).await;
    assert_eq!(status, StatusCode::OK);
    let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
    let mut found: Vec<Value> = page["items"].as_array().unwrap().clone();
    let mut requests = 1;
    while found.is_empty() {
        let c = cursor.expect("a cursor while rows remain");
        let (_, page) = s.get(&format!("{path}&cursor={c}"), AGENT).await;
        found = page["items"].as_array().unwrap().clone();
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        requests += 1;
    }
    assert!(requests >= 2, "6,000 rows are not read in one request");
    assert_eq!(found[0]["execution_id"], mine.to_string());
}

#[tokio::test]
async fn the_audit_log_is_verified_a_window_at_a_time() {
    let s = Server::start().await;
    for n in 0..5 {
        s.park(n).await;
    }
    let (status, all) = s.get("/govern/audit/verify", AUDITOR).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["ok"], true);
    let total = all["entries"].as_u64().unwrap();
    assert!(total >= 5, "{all}");
    assert!(all.get("next_from").is_none());
    let (_, window) = s.get("/govern/audit/verify?limit=2", AUDITOR).await;
    assert_eq!(window["entries"], 2);
    let next = window["next_from"].as_u64().unwrap();
    let (_, rest) = s
        .get(&format!("/govern/audit/verify?from={next}"), AUDITOR)
        .await;
    assert_eq!(rest["ok"], true);
    // The window's last entry starts the next one (its link is checked).
    assert_eq!(rest["entries"].as_u64().unwrap(), total - 1);
}
