//! `/govern/approvals`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use governor_core::{
    ApprovalPolicy, Args, AuditPolicy, Condition, Display, DisplayField, ExecutionStatus,
    GovernError, Mask, PolicyExt, Principal, REDACTED,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{AGENT, AUDITOR, CFO, STRANGER, Server, assert_problem};

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["execution_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pending_lists_what_each_caller_may_see_newest_first_in_pages() {
    let s = Server::start().await;
    let mut parked = Vec::new();
    for amount in [100, 200, 300] {
        parked.push(s.park(amount).await.to_string());
    }
    let other = s
        .park_as(Principal::new("other-agent"), 400)
        .await
        .to_string();
    let newest_first: Vec<String> = [other.clone()]
        .into_iter()
        .chain(parked.iter().rev().cloned())
        .collect();

    let (status, cfo) = s.get("/govern/approvals/pending", CFO).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&cfo), newest_first);
    let first = &cfo["items"][0];
    assert_eq!(first["action"], "transfer");
    assert_eq!(first["requester"], "other-agent");
    assert_eq!(first["inputs"], json!({"amount": 400}));
    assert_eq!(first["can_decide"], true);
    assert_eq!(first["stage"]["approvers"], json!(["cfo", "role:treasury"]));
    assert_eq!(first["stage"]["index"], 0);
    assert_eq!(first["stage"]["of"], 1);

    // The auditor reads all, decides nothing; the agent sees its own;
    // a stranger sees nothing.
    let (_, auditor) = s.get("/govern/approvals/pending", AUDITOR).await;
    assert_eq!(ids(&auditor), newest_first);
    assert!(
        auditor["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["can_decide"] == false)
    );
    let (_, agent) = s.get("/govern/approvals/pending", AGENT).await;
    assert_eq!(
        ids(&agent),
        parked.iter().rev().cloned().collect::<Vec<_>>()
    );
    let (_, stranger) = s.get("/govern/approvals/pending", STRANGER).await;
    assert_eq!(ids(&stranger), Vec::<String>::new());
    assert_eq!(stranger["next_cursor"], Value::Null);

    // Pages of two, following the cursor.
    let (_, page1) = s.get("/govern/approvals/pending?limit=2", CFO).await;
    assert_eq!(ids(&page1), newest_first[..2]);
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = s
        .get(
            &format!("/govern/approvals/pending?limit=2&cursor={cursor}"),
            CFO,
        )
        .await;
    assert_eq!(ids(&page2), newest_first[2..]);

    // Filters: approver entry, age, decidable.
    let (_, by_role) = s
        .get("/govern/approvals/pending?approver=role:treasury", AUDITOR)
        .await;
    assert_eq!(ids(&by_role).len(), 4);
    let (_, by_other) = s
        .get("/govern/approvals/pending?approver=ceo", AUDITOR)
        .await;
    assert_eq!(ids(&by_other).len(), 0);
    let (_, old) = s
        .get("/govern/approvals/pending?older_than=3600", CFO)
        .await;
    assert_eq!(ids(&old).len(), 0);
    let (_, decidable) = s
        .get("/govern/approvals/pending?decidable=true", AUDITOR)
        .await;
    assert_eq!(ids(&decidable).len(), 0);

    for bad in ["limit=x", "cursor=nope", "older_than=-1", "colour=red"] {
        let got = s
            .get(&format!("/govern/approvals/pending?{bad}"), CFO)
            .await;
        assert_problem(&got, StatusCode::BAD_REQUEST, "bad-request");
    }
}

#[tokio::test]
async fn an_approver_approves_over_http_and_the_approved_call_resumes() {
    let s = Server::start().await;
    let id = s.park(5_000).await;
    let (status, view) = s
        .post(
            &format!("/govern/approvals/{id}/approve"),
            CFO,
            json!({"reason": "budgeted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "approved");
    let decision = &view["approval"]["stages"][0]["decisions"][0];
    assert_eq!(decision["approver"], "cfo");
    assert_eq!(decision["reason"], "budgeted");

    let again = s
        .post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
        .await;
    assert_problem(&again, StatusCode::CONFLICT, "conflict");

    let done = s.governor.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(s.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_caller_waiting_in_process_continues_when_approved_over_http() {
    let s = Server::start().await;
    let waiting = s
        .governor
        .action("wire")
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::from_secs(30)))
        .build()
        .unwrap();
    let call = tokio::spawn(async move {
        waiting
            .run_as(
                Principal::new("agent"),
                Args::new().arg("amount", &7u32),
                || async { Ok::<_, GovernError>(json!("wired")) },
            )
            .await
    });
    let id = loop {
        let (_, page) = s.get("/govern/approvals/pending?action=wire", CFO).await;
        if let Some(id) = page["items"][0]["execution_id"].as_str() {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (status, _) = s
        .post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let out = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(out, json!("wired"));
}

#[tokio::test]
async fn only_approvers_decide_and_the_requester_cannot_approve_itself() {
    let s = Server::start().await;
    let id = s.park(10).await;
    let path = format!("/govern/approvals/{id}/approve");
    // Someone who may not see the request learns nothing of it: the
    // answer is the one for an id that does not exist.
    let stranger = s.post(&path, STRANGER, json!({})).await;
    assert_problem(&stranger, StatusCode::NOT_FOUND, "not-found");
    let missing = s
        .post(
            "/govern/approvals/01890a5d-ac96-774b-bcce-b302099a8057/approve",
            STRANGER,
            json!({}),
        )
        .await;
    assert_eq!(
        stranger.1["detail"]
            .as_str()
            .unwrap()
            .replace(&id.to_string(), "ID"),
        missing.1["detail"]
            .as_str()
            .unwrap()
            .replace("01890a5d-ac96-774b-bcce-b302099a8057", "ID")
    );
    // A reader who is no approver sees it, and is told so.
    let auditor = s.post(&path, AUDITOR, json!({})).await;
    assert_problem(&auditor, StatusCode::FORBIDDEN, "not-an-approver");
    let reject = s
        .post(
            &format!("/govern/approvals/{id}/reject"),
            STRANGER,
            json!({"reason": "no"}),
        )
        .await;
    assert_problem(&reject, StatusCode::NOT_FOUND, "not-found");

    // A treasurer who asked for the transfer may not approve it.
    let treasurer = Principal::new("cfo").with_roles(["treasury"]);
    let own = s.park_as(treasurer, 20).await;
    let selfish = s
        .post(&format!("/govern/approvals/{own}/approve"), CFO, json!({}))
        .await;
    assert_problem(&selfish, StatusCode::FORBIDDEN, "self-approval");

    // Nobody can even look at it without a reason to.
    let look = s.get(&format!("/govern/approvals/{id}"), STRANGER).await;
    assert_problem(&look, StatusCode::NOT_FOUND, "not-found");
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::AwaitingApproval);
    assert!(stored.approval.unwrap().stages[0].decisions.is_empty());
}

#[tokio::test]
async fn a_rejection_reason_reaches_the_record() {
    let s = Server::start().await;
    let id = s.park(10).await;
    let (status, view) = s
        .post(
            &format!("/govern/approvals/{id}/reject"),
            CFO,
            json!({"reason": "vendor not verified"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "rejected");
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::Rejected);
    assert!(
        stored
            .failure
            .unwrap()
            .message
            .contains("vendor not verified")
    );
    assert_eq!(s.runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn edits_and_grants_go_through_the_approval_rules() {
    let s = Server::start().await;
    let id = s.park(900).await;
    let (status, view) = s
        .post(
            &format!("/govern/approvals/{id}/approve"),
            CFO,
            json!({"edits": {"amount": 500}, "reason": "cap at 500"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["approval"]["edited_inputs"], json!({"amount": 500}));
    let done = s.governor.resume(id).await.unwrap();
    assert_eq!(done.output.unwrap().value(), json!({"sent": 500}));

    let not_object = s
        .post(
            &format!("/govern/approvals/{}/approve", s.park(1).await),
            CFO,
            json!({"edits": [1]}),
        )
        .await;
    assert_problem(
        &not_object,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-edit",
    );

    let both = s
        .post(
            &format!("/govern/approvals/{}/approve", s.park(2).await),
            CFO,
            json!({"edits": {"amount": 1}, "grant": {"window_seconds": 1}}),
        )
        .await;
    assert_problem(&both, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    let granted = s.park(50).await;
    let (status, _) = s
        .post(
            &format!("/govern/approvals/{granted}/approve"),
            CFO,
            json!({"grant": {"window_seconds": 3600}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The agent's next transfer of the same amount passes without asking
    // (grants cover the same arguments only unless asked otherwise).
    let next = s
        .transfer
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &50u32),
            || async { Ok::<_, GovernError>(json!("ran")) },
        )
        .await
        .unwrap();
    assert_eq!(next, json!("ran"));
    let other = s
        .transfer
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &60u32),
            || async { Ok::<_, GovernError>(json!("ran")) },
        )
        .await;
    assert!(
        matches!(other, Err(GovernError::Pending { .. })),
        "{other:?}"
    );
}

#[tokio::test]
async fn malformed_decisions_are_named_and_change_nothing() {
    let s = Server::start().await;
    let id = s.park(10).await;
    let path = format!("/govern/approvals/{id}/approve");
    let bad_id = s.post("/govern/approvals/12/approve", CFO, json!({})).await;
    assert_problem(&bad_id, StatusCode::BAD_REQUEST, "bad-request");
    let unknown = s
        .post(
            "/govern/approvals/01890a5d-ac96-774b-bcce-b302099a8057/approve",
            CFO,
            json!({}),
        )
        .await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "not-found");
    let field = s.post(&path, CFO, json!({"reasn": "typo"})).await;
    assert_problem(&field, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let typed = s.post(&path, CFO, json!({"reason": 12})).await;
    assert_problem(&typed, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let res = s
        .raw(Method::POST, &path)
        .bearer_auth(CFO)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = s
        .raw(Method::POST, &path)
        .bearer_auth(CFO)
        .header("content-type", "text/plain")
        .body("approve please")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::AwaitingApproval);

    // A policy that wants a reason gets one.
    let strict = s
        .governor
        .action("strict")
        .policy(ApprovalPolicy::new(["cfo"]).require_reason(true))
        .build()
        .unwrap();
    let err = strict
        .run_as(Principal::new("agent"), Args::new(), || async {
            Ok::<_, GovernError>(json!(null))
        })
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id } = err else {
        panic!("expected pending, got {err}");
    };
    let empty = s
        .send(
            Method::POST,
            &format!("/govern/approvals/{execution_id}/approve"),
            Some(CFO),
            None,
        )
        .await;
    assert_problem(&empty, StatusCode::UNPROCESSABLE_ENTITY, "reason-required");
}

#[tokio::test]
async fn sealed_arguments_never_leave_the_server() {
    let s = Server::start().await;
    let wire = s
        .governor
        .action("wire")
        .policy(governor_core::AuditPolicy::new().sensitive_fields(["iban"]))
        .policy(ApprovalPolicy::new(["cfo"]))
        .build()
        .unwrap();
    let err = wire
        .run_as(
            Principal::new("agent"),
            Args::new().arg("iban", &"DE89370400440532013000"),
            || async { Ok::<_, GovernError>(json!(null)) },
        )
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id: id } = err else {
        panic!("{err}");
    };
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert!(stored.approval.unwrap().sealed_inputs.is_some());
    for path in [
        format!("/govern/approvals/{id}"),
        format!("/govern/executions/{id}"),
        "/govern/executions".to_owned(),
        "/govern/approvals/pending".to_owned(),
    ] {
        let (status, body) = s.get(&path, AUDITOR).await;
        assert_eq!(status, StatusCode::OK);
        let text = body.to_string();
        assert!(!text.contains("sealed_inputs"), "{path}: {text}");
        assert!(!text.contains("DE8937"), "{path}: {text}");
    }
}

#[tokio::test]
async fn views_show_what_will_run_and_a_stale_look_is_refused() {
    let s = Server::start().await;
    let id = s.park(10).await;
    let path = format!("/govern/approvals/{id}");
    let (_, before) = s.get(&path, CFO).await;
    assert_eq!(before["edited"], false);
    assert_eq!(before["will_run"], json!({"amount": 10}));
    let seen = before["digest"].as_str().unwrap().to_owned();

    // The CFO edits; an approval as seen before the edit would approve
    // what nobody saw.
    let (status, after) = s
        .post(
            &format!("{path}/approve"),
            CFO,
            json!({"edits": {"amount": 7}, "expected_digest": seen, "reason": "cap"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["success"], true);
    assert_eq!(after["inputs"], json!({"amount": 10}), "as asked");
    assert_eq!(after["will_run"], json!({"amount": 7}));
    assert_eq!(after["edited"], true);
    assert_eq!(
        after["changes"],
        json!([{"argument": "amount", "asked": 10, "will_run": 7}])
    );
    assert_ne!(after["digest"].as_str().unwrap(), seen);

    // A second request: an approver who looked before an edit gets 409.
    let id = s.park(30).await;
    let path = format!("/govern/approvals/{id}");
    let stale = s
        .post(
            &format!("{path}/approve"),
            CFO,
            json!({"expected_digest": "0000"}),
        )
        .await;
    assert_problem(&stale, StatusCode::CONFLICT, "changed-since-seen");
    let stale = s
        .post(
            &format!("{path}/reject"),
            CFO,
            json!({"expected_digest": "0000"}),
        )
        .await;
    assert_problem(&stale, StatusCode::CONFLICT, "changed-since-seen");
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::AwaitingApproval);
}

#[tokio::test]
async fn the_seeds_decision_bodies_are_accepted() {
    let s = Server::start().await;
    let id = s.park(10).await;
    let path = format!("/govern/approvals/{id}");
    let impostor = s
        .post(
            &format!("{path}/approve"),
            CFO,
            json!({"approver": "ceo", "approved": true, "reason": "ok"}),
        )
        .await;
    assert_problem(&impostor, StatusCode::FORBIDDEN, "forbidden");
    let contradiction = s
        .post(
            &format!("{path}/approve"),
            CFO,
            json!({"approver": "cfo", "approved": false}),
        )
        .await;
    assert_problem(&contradiction, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, body) = s
        .post(
            &format!("{path}/approve"),
            CFO,
            json!({"approver": "cfo@example.com", "approved": true, "reason": "budgeted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["execution_id"], json!(id));

    let id = s.park(11).await;
    let (status, body) = s
        .post(
            &format!("/govern/approvals/{id}/reject"),
            CFO,
            json!({"approver": "cfo", "approved": false, "reason": "no"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "rejected");
}

#[tokio::test]
async fn grants_are_listed_and_revoked_over_http() {
    let s = Server::start().await;
    let id = s.park(50).await;
    let (status, _) = s
        .post(
            &format!("/govern/approvals/{id}/approve"),
            CFO,
            json!({"grant": {"window_seconds": 3600}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, listed) = s.get("/govern/grants", CFO).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let grants = listed.as_array().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["principal"], "agent");
    assert_eq!(grants[0]["granted_by"], "cfo");
    let grant = grants[0]["id"].as_str().unwrap().to_owned();
    let (_, theirs) = s.get("/govern/grants", STRANGER).await;
    assert_eq!(theirs, json!([]), "a stranger sees no grant");
    let (_, audited) = s.get("/govern/grants?action=transfer", AUDITOR).await;
    assert_eq!(audited.as_array().unwrap().len(), 1);

    let path = format!("/govern/grants/{grant}?reason=over");
    let stranger = s.send(Method::DELETE, &path, Some(STRANGER), None).await;
    assert_problem(&stranger, StatusCode::NOT_FOUND, "not-found");
    // A reader may see it but did not give it and is not covered by it.
    let reader = s.send(Method::DELETE, &path, Some(AUDITOR), None).await;
    assert_problem(&reader, StatusCode::FORBIDDEN, "denied");
    let (status, revoked) = s.send(Method::DELETE, &path, Some(CFO), None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["id"], grant);
    let (_, after) = s.get("/govern/grants", CFO).await;
    assert_eq!(after, json!([]));
    let again = s.send(Method::DELETE, &path, Some(CFO), None).await;
    assert_problem(&again, StatusCode::NOT_FOUND, "not-found");
    // The same transfer asks again.
    let next = s
        .transfer
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &50u32),
            || async { Ok::<_, GovernError>(json!("ran")) },
        )
        .await;
    assert!(matches!(next, Err(GovernError::Pending { .. })), "{next:?}");
}

#[tokio::test]
async fn a_view_reads_as_the_action_declares_with_why_it_asks_and_masked_values() {
    let s = Server::start().await;
    let wire = s
        .governor
        .action("wire")
        .policy(AuditPolicy::new().mask("iban", Mask::Last4))
        .policy(
            ApprovalPolicy::new(["cfo"])
                .require_reason(true)
                .named("LargeWire")
                .when(Condition::compile_pre("input.amount >= 10000", "test").unwrap()),
        )
        .display(
            Display::titled("Wire {amount:currency(EUR)} to {to}")
                .field(DisplayField::new("amount").label("Amount").currency("EUR"))
                .on_approve("The money leaves at once."),
        )
        .resumable(|_: Value| async { Ok::<_, GovernError>(json!("sent")) })
        .build()
        .unwrap();
    let err = wire
        .run_as(
            Principal::new("agent"),
            Args::new()
                .arg("amount", &93_231)
                .arg("to", &"Globex")
                .arg("iban", &"DE89 3704 0044 0532 0130 00"),
            || async { Ok::<_, GovernError>(json!("ran in place")) },
        )
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id: id } = err else {
        panic!("{err}");
    };
    let (status, view) = s.get(&format!("/govern/approvals/{id}"), CFO).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["title"], "Wire €93,231.00 to Globex");
    assert_eq!(view["display"]["on_approve"], "The money leaves at once.");
    assert_eq!(view["display"]["fields"][0]["currency"], "EUR");
    assert_eq!(view["inputs"]["iban"], format!("{REDACTED}3000"));
    let trigger = &view["stage"]["trigger"];
    assert_eq!(trigger["condition"], "input.amount >= 10000");
    assert_eq!(trigger["unless"], false);
    assert_eq!(trigger["values"], json!({"amount": 93_231}));
    assert_eq!(view["stage"]["require_reason"], true);

    // The pending list carries the same, and the action list the display.
    let (_, page) = s.get("/govern/approvals/pending?action=wire", CFO).await;
    assert_eq!(page["items"][0]["title"], "Wire €93,231.00 to Globex");
    let (_, actions) = s.get("/govern/actions", AUDITOR).await;
    let listed = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "wire")
        .unwrap();
    assert_eq!(
        listed["display"]["title"],
        "Wire {amount:currency(EUR)} to {to}"
    );

    // Without a reason the approval is refused with a named problem, and
    // nothing changes.
    let refused = s
        .post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
        .await;
    assert_eq!(refused.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.1);
    let stored = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::AwaitingApproval);
}

#[tokio::test]
async fn an_approver_lists_the_executions_they_decided_or_are_asked_to_decide() {
    let s = Server::start().await;
    let decided = s.park(10).await;
    let waiting = s.park(20).await;
    let (status, _) = s
        .post(
            &format!("/govern/approvals/{decided}/approve"),
            CFO,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = s.get("/govern/executions", CFO).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&decided.to_string().as_str()), "{page}");
    assert!(listed.contains(&waiting.to_string().as_str()), "{page}");
    // Someone neither asked nor asking sees none of them.
    let (_, page) = s.get("/govern/executions", STRANGER).await;
    assert_eq!(page["items"], json!([]));
    let (_, page) = s.get("/govern/executions?principal=agent", STRANGER).await;
    assert_eq!(page["items"], json!([]));
}
