//! JWT bearer tokens (feature `jwt`).

use governor_core::{Governor, MemoryStore};
use governor_http::{ApiKeys, JwtVerifier};
use jsonwebtoken::{EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &[u8] = b"a-shared-secret-of-at-least-32-bytes!!";

fn token(claims: Value, secret: &[u8]) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn valid_jwts_speak_for_their_subject_and_others_are_refused() {
    let governor = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let verifier = JwtVerifier::hs256(SECRET)
        .unwrap()
        .issuer("https://idp.example");
    let app = governor_http::api(governor, ApiKeys::new().with_jwt(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = crate::client();
    let status = |t: String| {
        let req = client
            .get(format!("{base}/govern/executions?principal=ana"))
            .bearer_auth(t);
        async move { req.send().await.unwrap().status() }
    };
    let good = json!({"sub": "ana", "exp": now() + 600, "iss": "https://idp.example",
                      "permissions": ["governor:read"]});
    assert_eq!(status(token(good.clone(), SECRET)).await, StatusCode::OK);
    // Without governor:read, the audit log is forbidden: the claims, not
    // the request, decide who it is and what it may do.
    let reader = json!({"sub": "bob", "exp": now() + 600, "iss": "https://idp.example"});
    let audit = client
        .get(format!("{base}/govern/audit"))
        .bearer_auth(token(reader, SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), StatusCode::FORBIDDEN);
    let expired = json!({"sub": "ana", "exp": now() - 600, "iss": "https://idp.example"});
    let wrong_issuer = json!({"sub": "ana", "exp": now() + 600, "iss": "https://evil.example"});
    let no_exp = json!({"sub": "ana", "iss": "https://idp.example"});
    for refused in [
        token(expired, SECRET),
        token(wrong_issuer, SECRET),
        token(no_exp, SECRET),
        token(good, b"another-secret-that-is-32-bytes-long!!"),
        "not.a.jwt".to_owned(),
    ] {
        assert_eq!(status(refused).await, StatusCode::UNAUTHORIZED);
    }
}

#[test]
fn weak_secrets_and_unknown_algorithms_are_refused() {
    assert!(JwtVerifier::hs256(b"short").is_err());
    let err = JwtVerifier::public_key_pem("HS512", b"").unwrap_err();
    assert!(err.to_string().contains("HS512"));
    assert!(JwtVerifier::public_key_pem("RS256", b"not pem").is_err());
}

#[tokio::test]
async fn not_before_is_honoured_and_only_verified_emails_count() {
    let governor = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let transfer = governor
        .action("transfer")
        .policy(governor_core::ApprovalPolicy::new(["cfo@example.com"]))
        .build()
        .unwrap();
    let app = governor_http::api(
        governor.clone(),
        ApiKeys::new().with_jwt(JwtVerifier::hs256(SECRET).unwrap().audience("governor")),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = crate::client();
    let park = || async {
        match transfer
            .run_as(
                governor_core::Principal::new("agent"),
                governor_core::Args::new().arg("amount", &5),
                || async { Ok::<_, governor_core::GovernError>(()) },
            )
            .await
        {
            Err(governor_core::GovernError::Pending { execution_id }) => execution_id,
            other => panic!("{other:?}"),
        }
    };
    let approve = |claims: Value, id| {
        let req = client
            .post(format!("{base}/govern/approvals/{id}/approve"))
            .bearer_auth(token(claims, SECRET))
            .json(&json!({}));
        async move { req.send().await.unwrap().status() }
    };
    let claims = |extra: Value| {
        let mut c = json!({"sub": "mallory", "exp": now() + 600, "aud": "governor",
                           "email": "cfo@example.com"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let id = park().await;
    // Not valid yet.
    let early = claims(json!({"nbf": now() + 3600, "email_verified": true}));
    assert_eq!(approve(early, id).await, StatusCode::UNAUTHORIZED);
    // An email the identity provider did not verify is no identity: the
    // request is not even visible to them.
    for unverified in [json!({}), json!({"email_verified": false})] {
        assert_eq!(approve(claims(unverified), id).await, StatusCode::NOT_FOUND);
    }
    let verified = claims(json!({"email_verified": true}));
    assert_eq!(approve(verified, id).await, StatusCode::OK);
}

#[tokio::test]
async fn an_event_stream_closes_with_1008_when_its_jwt_expires() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let governor = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let app = governor_http::api(
        governor,
        ApiKeys::new().with_jwt(JwtVerifier::hs256(SECRET).unwrap()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // jsonwebtoken allows 60 s of leeway on `exp` by default.
    let short = token(
        json!({"sub": "ana", "exp": now() - 58, "permissions": ["governor:read"]}),
        SECRET,
    );
    let mut req = format!("{base}/govern/events")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {short}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let frame = crate::events::close_frame(&mut ws).await;
    assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
    assert!(frame.reason.contains("expired"), "{frame:?}");
}
