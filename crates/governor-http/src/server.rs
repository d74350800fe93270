//! The accept loop behind [`serve`](crate::serve): HTTP/1.1 with upgrades
//! (the event stream), graceful shutdown, and a problem document, not an
//! empty answer, for bytes that are not HTTP at all.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

/// Headers hyper reads before giving up with an empty 431: well above
/// [`Limits::max_headers`](crate::Limits::max_headers), so that the limit
/// is reached in the router, which answers with a problem document.
const HYPER_MAX_HEADERS: usize = 1000;
/// The largest request head hyper buffers (above `max_uri_bytes`).
const HYPER_MAX_HEAD: usize = 1 << 20;
/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, app.clone(), stopped.clone()));
                }
                // Out of descriptors, or a connection reset before it was
                // taken: the listener itself is fine.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(stream: TcpStream, app: Router, mut stopped: watch::Receiver<bool>) {
    if !starts_like_http(&stream).await {
        not_http(stream).await;
        return;
    }
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(
        app.map_request(|req: axum::http::Request<hyper::body::Incoming>| req.map(Body::new)),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_HEAD);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Whether the first byte could begin a request line (a method is upper
/// case letters). A TLS handshake or random bytes cannot.
async fn starts_like_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HEAD_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0].is_ascii_uppercase(),
        // Closed, failed or silent: hyper deals with it as it would.
        _ => true,
    }
}

/// Answers bytes that are not HTTP with a 400 problem document and closes.
async fn not_http(mut stream: TcpStream) {
    let body = serde_json::json!({
        "type": "urn:governor:problem:not-http",
        "title": "Bad Request",
        "status": 400,
        "detail": "this is an HTTP/1.1 server: the request does not start with a request line (a TLS client speaking to a plain-HTTP port sends this too)",
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        crate::PROBLEM_JSON,
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
