//! `/links/{token}`: the page an emailed approval link opens. A GET shows
//! and decides nothing; a POST decides once; a stale, altered or expired
//! link decides nothing and says why.

use chrono::Utc;
use governor_core::{
    ApprovalLink, ApprovalPolicy, Args, ExecutionId, ExecutionStatus, GovernError, LinkKey,
    Principal, Verdict,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{CFO, Server};

async fn server() -> Server {
    Server::start_with(|b| b.link_key(LinkKey::from_bytes([9; 32]))).await
}

/// The link the email to `address` (for the stage's entry `approver`)
/// would carry.
async fn link(s: &Server, id: ExecutionId, approver: &str, address: &str, v: Verdict) -> String {
    let e = s.governor.execution(id).await.unwrap().unwrap();
    let request = e.approval.unwrap();
    let stage = request.current_stage().unwrap().0;
    s.governor
        .sign_link(&ApprovalLink {
            execution_id: id,
            stage,
            approver: approver.into(),
            address: address.into(),
            verdict: v,
            digest: request.digest,
            expires_at: Utc::now() + chrono::Duration::hours(1),
            notification: uuid::Uuid::now_v7(),
        })
        .unwrap()
}

async fn open(s: &Server, token: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = s
        .raw(Method::GET, &format!("/links/{token}"))
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

async fn confirm(s: &Server, token: &str, reason: Option<&str>) -> (StatusCode, String) {
    let body = reason
        .map(|r| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("reason", r)
                .finish()
        })
        .unwrap_or_default();
    let r = s
        .raw(Method::POST, &format!("/links/{token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn status(s: &Server, id: ExecutionId) -> ExecutionStatus {
    s.governor.execution(id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn opening_a_link_shows_the_request_and_decides_nothing_until_confirmed() {
    let s = server().await;
    let id = s.park(93_231).await;
    let token = link(&s, id, "cfo", "cfo@example.com", Verdict::Approve).await;
    for _ in 0..3 {
        let (code, headers, html) = open(&s, &token).await;
        assert_eq!(code, StatusCode::OK, "{html}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, governor_http::LINK_PAGE_POLICY);
        assert!(!csp.contains("script-src") && csp.contains("default-src 'none'"));
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(!html.contains("<script"), "no script at all");
        assert!(html.contains("93,231") && html.contains("agent"), "{html}");
        assert!(html.contains("cfo@example.com") && html.contains("Confirm: Approve"));
        assert!(html.contains(r#"<form method="post""#));
    }
    let head = s
        .raw(Method::HEAD, &format!("/links/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        status(&s, id).await,
        ExecutionStatus::AwaitingApproval,
        "GET and HEAD decide nothing"
    );

    let (code, html) = confirm(&s, &token, Some("invoice 42")).await;
    assert_eq!(code, StatusCode::OK, "{html}");
    assert!(html.contains("Approved"), "{html}");
    let e = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    let d = &e.approval.unwrap().stages[0].decisions[0];
    assert_eq!(
        (d.approver.as_str(), d.via.as_deref()),
        ("cfo", Some("link"))
    );
    assert_eq!(d.reason.as_deref(), Some("invoice 42"));

    // Used: both the page and another POST say so.
    let (code, _, html) = open(&s, &token).await;
    assert_eq!(code, StatusCode::GONE);
    assert!(html.contains("already used"), "{html}");
    let (code, _) = confirm(&s, &token, None).await;
    assert_eq!(code, StatusCode::GONE);
}

#[tokio::test]
async fn stale_altered_and_expired_links_are_refused_and_say_why() {
    let s = server().await;
    // Decided in the console before the link was used.
    let id = s.park(10).await;
    let token = link(&s, id, "cfo", "cfo@example.com", Verdict::Approve).await;
    let (code, _) = s
        .post(
            &format!("/govern/approvals/{id}/reject"),
            CFO,
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, html) = open(&s, &token).await;
    assert_eq!(code, StatusCode::GONE);
    assert!(
        html.contains("rejected") || html.contains("already used"),
        "{html}"
    );

    // Altered: one character of the signed body, or of the signature.
    let id = s.park(10).await;
    let token = link(
        &s,
        id,
        "role:treasury",
        "tess@example.com",
        Verdict::Approve,
    )
    .await;
    let (body, tag) = token.rsplit_once('.').unwrap();
    let flip = |t: &str| {
        let mut b = t.as_bytes().to_vec();
        let i = b.len() / 2;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    for bad in [
        format!("{}.{tag}", flip(body)),
        format!("{body}.{}", flip(tag)),
        "nonsense".into(),
    ] {
        let (code, _, html) = open(&s, &bad).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{html}");
        let (code, _) = confirm(&s, &bad, Some("x")).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }
    // Expired.
    let e = s.governor.execution(id).await.unwrap().unwrap();
    let expired = s
        .governor
        .sign_link(&ApprovalLink {
            execution_id: id,
            stage: 0,
            approver: "cfo".into(),
            address: "cfo@example.com".into(),
            verdict: Verdict::Approve,
            digest: e.approval.unwrap().digest,
            expires_at: Utc::now() - chrono::Duration::seconds(5),
            notification: uuid::Uuid::now_v7(),
        })
        .unwrap();
    let (code, _, html) = open(&s, &expired).await;
    assert_eq!(code, StatusCode::GONE);
    assert!(html.contains("expired"), "{html}");
    assert_eq!(status(&s, id).await, ExecutionStatus::AwaitingApproval);
    // The role link still works: as the address, holding the role.
    let (code, html) = confirm(&s, &token, None).await;
    assert_eq!(code, StatusCode::OK, "{html}");
    let e = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(
        e.approval.unwrap().stages[0].decisions[0].approver,
        "tess@example.com"
    );
}

#[tokio::test]
async fn a_link_sent_before_an_edit_decides_nothing() {
    let s = server().await;
    let payout = s
        .governor
        .action("payout")
        .policy(ApprovalPolicy::new(["cfo", "role:treasury"]).quorum(2, true))
        .resumable(|v: Value| async move { Ok::<_, GovernError>(v) })
        .build()
        .unwrap();
    let id = match payout
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &100),
            || async { Ok::<_, GovernError>(json!(0)) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("{other:?}"),
    };
    let tess = link(
        &s,
        id,
        "role:treasury",
        "tess@example.com",
        Verdict::Approve,
    )
    .await;
    let (code, body) = s
        .post(
            &format!("/govern/approvals/{id}/approve"),
            CFO,
            json!({"edits": {"amount": 1_000_000}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _, html) = open(&s, &tess).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(html.contains("edited"), "{html}");
    let (code, _) = confirm(&s, &tess, None).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(status(&s, id).await, ExecutionStatus::AwaitingApproval);
}

#[tokio::test]
async fn a_required_reason_is_asked_for_and_arguments_are_escaped() {
    let s = server().await;
    let pay = s
        .governor
        .action("pay")
        .policy(ApprovalPolicy::new(["cfo"]).require_reason(true))
        .build()
        .unwrap();
    let id = match pay
        .run_as(
            Principal::new("agent"),
            Args::new().arg("to", &"<script>alert(1)</script>"),
            || async { Ok::<_, GovernError>(json!(0)) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("{other:?}"),
    };
    let token = link(&s, id, "cfo", "cfo@example.com", Verdict::Reject).await;
    let (code, _, html) = open(&s, &token).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        !html.contains("<script>") && html.contains("&lt;script&gt;"),
        "{html}"
    );
    assert!(html.contains("(required)") && html.contains(" required>"));
    let (code, html) = confirm(&s, &token, Some("   ")).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Give a reason"), "{html}");
    assert_eq!(status(&s, id).await, ExecutionStatus::AwaitingApproval);
    let (code, html) = confirm(&s, &token, Some("wrong vendor")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("Rejected"), "{html}");
    assert_eq!(status(&s, id).await, ExecutionStatus::Rejected);
}

#[tokio::test]
async fn without_a_link_key_no_link_works() {
    let s = Server::start().await;
    let id = s.park(10).await;
    let token = LinkKey::from_bytes([9; 32]).sign(&ApprovalLink {
        execution_id: id,
        stage: 0,
        approver: "cfo".into(),
        address: "cfo@example.com".into(),
        verdict: Verdict::Approve,
        digest: None,
        expires_at: Utc::now() + chrono::Duration::hours(1),
        notification: uuid::Uuid::now_v7(),
    });
    let (code, _, _) = open(&s, &token).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = confirm(&s, &token, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status(&s, id).await, ExecutionStatus::AwaitingApproval);
}
