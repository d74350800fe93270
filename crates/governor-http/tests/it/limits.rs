//! What one request may cost: every refusal is a problem document.

use std::io::{Read, Write};
use std::time::Duration;

use governor_core::{Governor, MemoryStore, Principal};
use governor_http::{ApiKeys, ApiState, Limits};
use serde_json::Value;

async fn server(limits: Limits) -> String {
    let governor = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let keys = ApiKeys::new().with_token("limits-token", Principal::new("agent"));
    let app = governor_http::router(ApiState::new(governor, keys).limits(limits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(governor_http::serve(listener, app, std::future::pending()));
    addr
}

/// Sends raw bytes; answers status, content type and body.
fn raw(addr: &str, bytes: &[u8]) -> (u16, String, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (
        status,
        content_type,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn assert_problem(got: &(u16, String, Value), status: u16, kind: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1, "application/problem+json", "{got:?}");
    assert_eq!(
        got.2["type"],
        format!("urn:governor:problem:{kind}"),
        "{got:?}"
    );
    assert!(got.2["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_answers_with_a_problem_document() {
    let addr = server(Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let addr2 = addr.clone();
    let results = tokio::task::spawn_blocking(move || {
        let addr = addr2;
        let body = format!("{{\"action\":\"x\",\"arguments\":{{\"pad\":\"{}\"}}}}", "a".repeat(4096));
        let too_large = raw(
            &addr,
            format!(
                "POST /govern/executions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer limits-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let long_uri = raw(
            &addr,
            format!(
                "GET /govern/executions?action={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                "a".repeat(10_000)
            )
            .as_bytes(),
        );
        let headers: String = (0..150).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect();
        let many_headers = raw(
            &addr,
            format!("GET /govern/me HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
        );
        let not_http = raw(&addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage");
        (too_large, long_uri, many_headers, not_http)
    })
    .await
    .unwrap();
    assert_problem(&results.0, 413, "too-large");
    assert!(results.0.2["detail"].as_str().unwrap().contains("1024"));
    assert_problem(&results.1, 414, "uri-too-long");
    assert_problem(&results.2, 431, "too-many-headers");
    assert_problem(&results.3, 400, "not-http");
    // The server still answers.
    let ok = tokio::task::spawn_blocking(move || {
        raw(
            &addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(ok.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_requests_than_allowed_at_once_are_refused_not_queued() {
    let addr = server(Limits {
        max_concurrent: 1,
        ..Limits::default()
    })
    .await;
    // One request holds the only slot: a request whose body never ends.
    // A probe may be admitted before it, refusing the holder; then the
    // holder tries again, until it holds the slot and a probe is refused.
    let refused = tokio::task::spawn_blocking(move || {
        let mut holder = hold(&addr);
        let mut last = None;
        for _ in 0..100 {
            let got = raw(
                &addr,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            if got.0 == 503 {
                return got;
            }
            last = Some(got);
            if answered(&holder) {
                holder = hold(&addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("never refused: {last:?}")
    })
    .await
    .unwrap();
    assert_problem(&refused, 503, "overloaded");
}

/// Opens a request that holds a slot for as long as the connection lives.
fn hold(addr: &str) -> std::net::TcpStream {
    let mut holder = std::net::TcpStream::connect(addr).unwrap();
    holder
        .write_all(b"POST /govern/executions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer limits-token\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    holder
}

/// Whether the server has answered (so the request no longer holds a slot).
fn answered(stream: &std::net::TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let got = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false).unwrap();
    !matches!(got, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
