//! The audit log, the kill switch and the flows view over HTTP.

use reqwest::StatusCode;
use serde_json::json;

use crate::{AUDITOR, CFO, PAUSER, STRANGER, Server, assert_problem};

#[tokio::test]
async fn the_audit_log_pages_and_verifies_for_readers_only() {
    let s = Server::start().await;
    for n in 1..=3 {
        let id = s.park(n).await;
        s.post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
            .await;
    }
    let (status, page) = s.get("/govern/audit?limit=2", AUDITOR).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["seq"], 1);
    let after = page["next_after"].as_u64().unwrap();
    let (_, rest) = s
        .get(&format!("/govern/audit?after={after}&limit=1000"), AUDITOR)
        .await;
    assert!(rest["next_after"].is_null());
    assert_eq!(rest["items"][0]["seq"], after + 1);
    let (status, verified) = s.get("/govern/audit/verify", AUDITOR).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified["ok"], true);
    assert!(verified["entries"].as_u64().unwrap() >= 6, "{verified}");
    for path in ["/govern/audit", "/govern/audit/verify", "/govern/flows"] {
        assert_problem(
            &s.get(path, STRANGER).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
}

#[tokio::test]
async fn the_kill_switch_needs_the_pause_permission_and_a_reason() {
    let s = Server::start().await;
    let refused = s
        .post(
            "/govern/pauses",
            CFO,
            json!({"action": "transfer", "reason": "incident"}),
        )
        .await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "denied");
    let no_reason = s
        .post(
            "/govern/pauses",
            PAUSER,
            json!({"action": "transfer", "reason": " "}),
        )
        .await;
    assert_eq!(no_reason.0, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, pause) = s
        .post(
            "/govern/pauses",
            PAUSER,
            json!({"action": "transfer", "mode": "deny", "reason": "incident 42"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pause}");
    assert_eq!(pause["by"], "pauser");
    let (_, listed) = s.get("/govern/pauses", AUDITOR).await;
    assert_eq!(listed[0]["action"], "transfer");
    assert_eq!(listed[0]["reason"], "incident 42");
    // New calls of the paused action are refused.
    let call = s
        .transfer
        .run(governor_core::Args::new().arg("amount", &5), || async {
            Ok::<_, governor_core::GovernError>(json!(null))
        })
        .await;
    assert!(
        matches!(call, Err(governor_core::GovernError::Paused { .. })),
        "{call:?}"
    );

    let (status, lifted) = s
        .post(
            "/govern/pauses/lift",
            PAUSER,
            json!({"action": "transfer", "reason": "fixed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lifted["lifted"], true);
    let (_, listed) = s.get("/govern/pauses", AUDITOR).await;
    assert_eq!(listed, json!([]));
    assert_problem(
        &s.get("/govern/pauses", STRANGER).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}

#[tokio::test]
async fn flows_count_the_requests_waiting_at_each_stage() {
    let s = Server::start().await;
    let a = s.park(1).await;
    s.park(2).await;
    s.post(&format!("/govern/approvals/{a}/approve"), CFO, json!({}))
        .await;
    let (status, flows) = s.get("/govern/flows", AUDITOR).await;
    assert_eq!(status, StatusCode::OK, "{flows}");
    let transfer = &flows["flows"][0];
    assert_eq!(transfer["action"], "transfer");
    assert_eq!(transfer["waiting"], 1);
    assert_eq!(transfer["stages"][0]["waiting"], 1);
    assert_eq!(flows["truncated"], false);
}

#[tokio::test]
async fn actions_list_their_policies_stages_and_schema() {
    let s = Server::start().await;
    s.governor
        .action("refund")
        .policy(
            governor_core::ValidationPolicy::new()
                .input_schema(&json!({"type": "object", "required": ["amount"]}))
                .unwrap(),
        )
        .policy(
            governor_core::ApprovalPolicy::new(["lead"])
                .named("Lead")
                .quorum(2, true),
        )
        .external(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let (status, list) = s.get("/govern/actions", STRANGER).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let refund = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "refund")
        .unwrap();
    assert_eq!(
        refund["stages"],
        json!([{"policy": "Lead", "approvers": ["lead"], "quorum": 2}])
    );
    assert_eq!(refund["input_schema"]["required"], json!(["amount"]));
    assert_eq!(refund["policies"][0]["kind"], "validation");
    // Without governor:read, only what the caller may submit over HTTP.
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "transfer"),
        "{list}"
    );
    let (_, list) = s.get("/govern/actions", AUDITOR).await;
    let transfer = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "transfer")
        .unwrap();
    assert_eq!(
        transfer["stages"][0]["approvers"],
        json!(["cfo", "role:treasury"])
    );
}
