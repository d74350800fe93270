//! Slack against a local server implementing the Web API methods governor
//! calls (`chat.postMessage`, `chat.update`, `chat.postEphemeral`,
//! `views.open`, `users.info`) with their documented request and response
//! shapes, and interactions signed as Slack signs them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use governor_core::*;
use governor_notify::{SlackConfig, SlackTarget};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TOKEN: &str = "xoxb-test-token";

/// The fake Web API: every call it got, as (method, body or query).
#[derive(Clone, Default)]
struct FakeSlack {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    next_ts: Arc<Mutex<u64>>,
}

impl FakeSlack {
    fn calls(&self, method: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

async fn api(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    headers: HeaderMap,
    query: axum::extract::RawQuery,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (
            StatusCode::OK,
            axum::Json(json!({"ok": false, "error": "not_authed"})),
        );
    }
    let args: Value = if body.is_empty() {
        let q = query.0.unwrap_or_default();
        Value::Object(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    fake.calls
        .lock()
        .unwrap()
        .push((method.clone(), args.clone()));
    let answer = match method.as_str() {
        "chat.postMessage" => {
            let mut ts = fake.next_ts.lock().unwrap();
            *ts += 1;
            json!({"ok": true, "channel": args["channel"], "ts": format!("1700000000.{:06}", *ts),
                   "message": {"text": args["text"], "blocks": args["blocks"]}})
        }
        "chat.update" => {
            json!({"ok": true, "channel": args["channel"], "ts": args["ts"], "text": args["text"]})
        }
        "chat.postEphemeral" => json!({"ok": true, "message_ts": "1700000000.999999"}),
        "views.open" => json!({"ok": true, "view": {"id": "V0001", "type": "modal"}}),
        "users.info" => match args["user"].as_str() {
            Some("UCFO") => {
                json!({"ok": true, "user": {"id": "UCFO", "profile": {"email": "cfo@example.com"}}})
            }
            Some("UEVE") => {
                json!({"ok": true, "user": {"id": "UEVE", "profile": {"email": "eve@example.com"}}})
            }
            _ => json!({"ok": false, "error": "user_not_found"}),
        },
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    (StatusCode::OK, axum::Json(answer))
}

struct Setup {
    fake: FakeSlack,
    governor: Governor,
    interactions: String,
    client: reqwest::Client,
}

async fn setup() -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeSlack::default();
    let app = axum::Router::new()
        .route("/api/{method}", axum::routing::any(api))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_base = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = SlackConfig::new(TOKEN, SECRET, "C0APPROVALS");
    config.api_base = api_base;
    config.public_url = Some("https://governor.example.com".into());
    let slack = SlackTarget::new(config).unwrap();
    let governor = Governor::builder()
        .deliver_to(slack.clone())
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            lease: Duration::from_secs(5),
        })
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let interactions = format!(
        "http://{}/slack/interactions",
        listener.local_addr().unwrap()
    );
    let router = slack.interactions(governor.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Setup {
        fake,
        governor,
        interactions,
        client: reqwest::Client::new(),
    }
}

fn wire(g: &Governor, name: &str, require_reason: bool) -> Action {
    g.action(name)
        .display(Display::titled("Wire {amount:currency(EUR)} to {to}"))
        .policy(ApprovalPolicy::new(["cfo@example.com"]).require_reason(require_reason))
        .build()
        .unwrap()
}

async fn park(action: &Action) -> ExecutionId {
    match action
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &93_231).arg("to", &"Globex <b>"),
            || async { Ok::<_, GovernError>(json!("sent")) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected a parked call, got {other:?}"),
    }
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Posts `payload` as Slack does: form-encoded, signed at `at`.
async fn send(s: &Setup, payload: &Value, at: i64, secret: &str) -> (StatusCode, String) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{at}:{body}").as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = s
        .client
        .post(&s.interactions)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", at.to_string())
        .header("x-slack-signature", format!("v0={signature}"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

fn click(user: &str, action_id: &str, value: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "12345.98765.abcd",
        "channel": {"id": "C0APPROVALS"},
        "container": {"type": "message", "channel_id": "C0APPROVALS", "message_ts": "1700000000.000001"},
        "actions": [{"action_id": action_id, "block_id": "governor", "value": value, "type": "button"}],
    })
}

fn buttons(message: &Value) -> Vec<(String, String)> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_decides_as_the_mapped_approver_and_the_message_is_updated() {
    let s = setup().await;
    let id = park(&wire(&s.governor, "wire", false)).await;
    let posted = until("chat.postMessage", || {
        s.fake.calls("chat.postMessage").pop()
    })
    .await;
    assert_eq!(posted["channel"], "C0APPROVALS");
    assert_eq!(
        posted["text"],
        "Approval needed: Wire €93,231.00 to Globex <b>"
    );
    let text = posted["blocks"].to_string();
    assert!(
        text.contains("Globex &lt;b&gt;"),
        "mrkdwn is escaped: {text}"
    );
    let b = buttons(&posted);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].0, "governor.approve");
    assert!(b[0].1.starts_with(&format!("{id}|0|")));

    // Not an approver: nothing decided, told privately.
    let (code, _) = send(
        &s,
        &click("UEVE", "governor.approve", &b[0].1),
        now(),
        SECRET,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let told = until("chat.postEphemeral", || {
        s.fake.calls("chat.postEphemeral").pop()
    })
    .await;
    assert_eq!(told["user"], "UEVE");
    assert!(
        told["text"].as_str().unwrap().contains("not an approver"),
        "{told}"
    );
    assert_eq!(
        s.governor.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::AwaitingApproval
    );

    // The CFO (by their Slack profile's email) approves.
    let approve = click("UCFO", "governor.approve", &b[0].1);
    let at = now();
    let (code, _) = send(&s, &approve, at, SECRET).await;
    assert_eq!(code, StatusCode::OK);
    let e = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    let d = &e.approval.unwrap().stages[0].decisions[0];
    assert_eq!(
        (d.approver.as_str(), d.via.as_deref()),
        ("cfo@example.com", Some("slack"))
    );
    let updated = until("chat.update", || s.fake.calls("chat.update").pop()).await;
    assert_eq!(updated["ts"], "1700000000.000001");
    assert!(
        buttons(&updated).is_empty(),
        "no buttons on a decided request"
    );
    assert!(
        updated["blocks"].to_string().contains("Approved"),
        "{updated}"
    );

    // The same request again (a replay), a stale one, a forged one.
    assert_eq!(
        send(&s, &approve, at, SECRET).await.0,
        StatusCode::UNAUTHORIZED
    );
    let stale = click("UCFO", "governor.reject", &b[1].1);
    assert_eq!(
        send(&s, &stale, now() - 301, SECRET).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&s, &stale, now(), "not the secret").await.0,
        StatusCode::UNAUTHORIZED
    );
    let unsigned = s
        .client
        .post(&s.interactions)
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_elsewhere_updates_the_message() {
    let s = setup().await;
    let id = park(&wire(&s.governor, "wire", false)).await;
    until("chat.postMessage", || {
        s.fake.calls("chat.postMessage").pop()
    })
    .await;
    s.governor
        .reject(id, &Principal::new("cfo@example.com"), Some("wrong vendor"))
        .await
        .unwrap();
    let updated = until("chat.update", || s.fake.calls("chat.update").pop()).await;
    let text = updated["blocks"].to_string();
    assert!(
        text.contains("Rejected") && text.contains("wrong vendor"),
        "{text}"
    );
    assert!(buttons(&updated).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_reason_is_asked_in_a_dialog() {
    let s = setup().await;
    let id = park(&wire(&s.governor, "wire_reason", true)).await;
    let posted = until("chat.postMessage", || {
        s.fake.calls("chat.postMessage").pop()
    })
    .await;
    let value = buttons(&posted)[0].1.clone();
    let (code, _) = send(
        &s,
        &click("UCFO", "governor.approve", &value),
        now(),
        SECRET,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let opened = until("views.open", || s.fake.calls("views.open").pop()).await;
    assert_eq!(opened["trigger_id"], "12345.98765.abcd");
    let view = &opened["view"];
    assert_eq!(view["blocks"][0]["optional"], false);
    assert_eq!(
        s.governor.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::AwaitingApproval,
        "the click alone decided nothing"
    );
    let submit = |reason: Value| {
        json!({
            "type": "view_submission",
            "user": {"id": "UCFO"},
            "view": {
                "callback_id": view["callback_id"],
                "private_metadata": view["private_metadata"],
                "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
            },
        })
    };
    let (code, body) = send(&s, &submit(json!("   ")), now(), SECRET).await;
    assert_eq!(code, StatusCode::OK);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response_action"], "errors");
    assert!(
        answer["errors"]["reason"]
            .as_str()
            .unwrap()
            .contains("reason is required")
    );
    let (code, body) = send(&s, &submit(json!("invoice 42 checked")), now(), SECRET).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, ""));
    let e = s.governor.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    assert_eq!(
        e.approval.unwrap().stages[0].decisions[0].reason.as_deref(),
        Some("invoice 42 checked")
    );
}
