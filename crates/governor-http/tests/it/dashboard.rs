//! The dashboard's files and what the page relies on: `/govern/me` and a
//! WebSocket authenticated by subprotocol.

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::{AUDITOR, CFO, STRANGER, Server, assert_problem};

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let s = Server::start().await;
    let mut files = vec![
        ("/dashboard/", "text/html"),
        ("/dashboard/style.css", "text/css"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),
    ];
    for module in [
        "app", "api", "detail", "dom", "format", "pending", "schema", "state", "views",
    ] {
        files.push((
            Box::leak(format!("/dashboard/{module}.js").into_boxed_str()),
            "text/javascript",
        ));
    }
    for (path, kind) in files {
        let r = s.raw(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, governor_http::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        if path.ends_with('/') {
            // No inline script or style for the policy to forbid.
            assert!(
                !body.contains("<script>") && !body.contains(" style="),
                "{body}"
            );
            assert!(body.contains(r#"<script type="module" src="/dashboard/app.js">"#));
        }
        if path.ends_with(".js") {
            assert!(!body.contains("innerHTML") && !body.contains("insertAdjacentHTML"));
            assert!(!body.contains("document.cookie"));
        }
    }
    let r = s.raw(Method::GET, "/dashboard").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "redirected to /dashboard/");
}

#[tokio::test]
async fn me_names_the_tokens_principal() {
    let s = Server::start().await;
    let (status, me) = s.get("/govern/me", AUDITOR).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], "auditor");
    assert_eq!(me["permissions"][0], "governor:read");
    let r = s.raw(Method::GET, "/govern/me").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn connect_with_protocols(s: &Server, protocols: &str) -> Result<String, String> {
    let url = format!("{}/govern/events", s.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocols).unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, response)) => {
            let chosen = response.headers()["sec-websocket-protocol"]
                .to_str()
                .unwrap()
                .to_owned();
            let _ = ws.close(None).await;
            let _ = ws.next().await;
            Ok(chosen)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn browsers_authenticate_the_event_stream_by_subprotocol() {
    let s = Server::start().await;
    let chosen = connect_with_protocols(&s, &format!("governor, bearer.{AUDITOR}"))
        .await
        .unwrap();
    assert_eq!(chosen, "governor", "the token is never echoed back");
    for bad in [
        format!("governor, bearer.{STRANGER}"),
        "governor, bearer.nope".to_owned(),
        format!("bearer.{AUDITOR}"),
        format!("governor, bearer.{CFO}"),
    ] {
        let err = connect_with_protocols(&s, &bad).await.unwrap_err();
        assert!(err.contains("401") || err.contains("403"), "{bad}: {err}");
    }
    // Without any token at all: 401 as before.
    let r = s.raw(Method::GET, "/govern/events").send().await.unwrap();
    assert_problem(
        &(r.status(), r.json().await.unwrap()),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
}
