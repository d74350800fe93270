//! `GET /govern/events`: the live stream over a WebSocket.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::{AUDITOR, CFO, STRANGER, Server, assert_problem};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &Server, query: &str, token: Option<&str>) -> Result<Socket, WsError> {
    let url = format!("{}/govern/events{query}", s.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The next JSON message (waiting at most 10 s: a missing event fails).
async fn next(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn a_reader_receives_a_calls_events_as_they_happen() {
    let s = Server::start().await;
    let mut ws = connect(&s, "?action=transfer", Some(AUDITOR))
        .await
        .unwrap();
    let mut other = connect(&s, "?types=approval.granted", Some(AUDITOR))
        .await
        .unwrap();
    let asked = Instant::now();
    let id = s.park(42).await;
    let first = next(&mut ws).await;
    let latency = asked.elapsed();
    assert_eq!(first["type"], "execution.started");
    assert_eq!(first["execution_id"], id.to_string());
    assert_eq!(first["action"], "transfer");
    let mut kinds = vec![first["type"].as_str().unwrap().to_owned()];
    while kinds.last().map(String::as_str) != Some("approval.requested") {
        kinds.push(next(&mut ws).await["type"].as_str().unwrap().to_owned());
    }
    eprintln!("first event after {latency:?}; kinds {kinds:?}");

    s.post(&format!("/govern/approvals/{id}/approve"), CFO, json!({}))
        .await;
    let granted = next(&mut other).await;
    assert_eq!(granted["type"], "approval.granted");
    assert_eq!(granted["execution_id"], id.to_string());
    // The filtered stream sees the grant after the parked state.
    let mut rest = Vec::new();
    while rest.last().map(String::as_str) != Some("approval.granted") {
        rest.push(next(&mut ws).await["type"].as_str().unwrap().to_owned());
    }
    assert!(rest.iter().all(|k| k != "execution.started"), "{rest:?}");
}

#[tokio::test]
async fn the_stream_is_for_readers_with_a_valid_filter_over_a_websocket() {
    let s = Server::start().await;
    for (token, status) in [
        (None, 401),
        (Some("nope"), 401),
        (Some(STRANGER), 403),
        (Some(CFO), 403),
    ] {
        match connect(&s, "", token).await {
            Err(WsError::Http(res)) => assert_eq!(res.status().as_u16(), status),
            other => panic!("expected HTTP {status}, got {other:?}"),
        }
    }
    match connect(&s, "?types=made.up", Some(AUDITOR)).await {
        Err(WsError::Http(res)) => assert_eq!(res.status().as_u16(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    let plain = s
        .send(Method::GET, "/govern/events", Some(AUDITOR), None)
        .await;
    assert_problem(&plain, StatusCode::UPGRADE_REQUIRED, "websocket-required");
}

#[tokio::test]
async fn a_reader_sees_only_its_tenants_events() {
    let s = Server::start().await;
    let mut tenant_b = connect(&s, "", Some(crate::READER_B)).await.unwrap();
    let mut everyone = connect(&s, "", Some(crate::READER_ALL)).await.unwrap();
    let of_a = s
        .park_as(governor_core::Principal::new("agent-1").with_tenant("A"), 5)
        .await;
    let of_b = s
        .park_as(governor_core::Principal::new("agent-1").with_tenant("B"), 6)
        .await;
    // The cross-tenant reader hears A's call first; tenant B's reader
    // hears B's call and nothing of A's.
    assert_eq!(next(&mut everyone).await["execution_id"], of_a.to_string());
    let first = next(&mut tenant_b).await;
    assert_eq!(first["execution_id"], of_b.to_string(), "{first}");
}

#[tokio::test]
async fn an_event_stream_closes_with_1008_when_its_key_is_removed() {
    let governor = governor_core::Governor::builder()
        .store(governor_core::MemoryStore::new())
        .build()
        .unwrap();
    let reader =
        governor_core::Principal::new("auditor").with_permissions([governor_http::READ_PERMISSION]);
    let state = governor_http::ApiState::new(
        governor,
        governor_http::ApiKeys::new().with_token("reader-token-to-revoke", reader),
    );
    let ring = state.key_ring();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/govern/events", listener.local_addr().unwrap());
    tokio::spawn(governor_http::serve(
        listener,
        governor_http::router(state),
        std::future::pending(),
    ));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        "Bearer reader-token-to-revoke".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // The config is reloaded without the key.
    ring.replace(governor_http::ApiKeys::new());
    let frame = close_frame(&mut ws).await;
    assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
}

/// The close frame the server ends `ws` with (within 15 s; other messages
/// before it are skipped).
pub(crate) async fn close_frame(
    ws: &mut Socket,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed within 15 s")
    .expect("a close frame with a code")
}
