//! The governor HTTP API as an axum [`Router`]: people decide approvals,
//! operators inspect and resume executions, probes check health.
//!
//! Every `/govern` request carries `Authorization: Bearer <token>`; tokens
//! are configured as [`ApiKeys`] (kept only as SHA-256 hashes), each
//! speaking for a [`Principal`](governor_core::Principal). Deciding an
//! approval requires being one of its approvers; reading everything
//! requires [`READ_PERMISSION`], resuming [`RESUME_PERMISSION`]. Errors
//! are RFC 9457 `application/problem+json` ([`Problem`]).
//!
//! ```no_run
//! use governor_core::{Governor, Principal};
//! use governor_http::{ApiKeys, api};
//!
//! # async fn run() -> std::io::Result<()> {
//! let governor = Governor::builder().build().expect("governor");
//! let keys = ApiKeys::new().with_token("cfo-token", Principal::new("cfo").with_roles(["cfo"]));
//! let app = axum::Router::new().merge(api(governor, keys));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! governor_http::serve(listener, app, std::future::pending()).await
//! # }
//! ```

mod approvals;
mod auth;
#[cfg(feature = "dashboard")]
mod dashboard;
mod events;
mod executions;
mod extract;
mod grants;
mod health;
#[cfg(feature = "jwt")]
mod jwt;
mod layer;
mod limits;
#[cfg(feature = "dashboard")]
mod link_page;
mod metrics;
mod notifications;
mod operations;
mod problem;
mod server;
mod state;
mod submit;
mod views;

use std::future::Future;

use axum::Router;
use axum::routing::{get, post};
use governor_core::Governor;

pub use auth::{ApiKeys, BadKeyHash, Caller, PrincipalClaims, hash_token};
#[cfg(feature = "dashboard")]
pub use dashboard::CONTENT_SECURITY_POLICY;
#[cfg(feature = "jwt")]
pub use jwt::{JwtConfigError, JwtVerifier};
pub use layer::{EXECUTION_HEADER, Govern, GovernLayer};
pub use limits::Limits;
#[cfg(feature = "dashboard")]
pub use link_page::LINK_PAGE_POLICY;
pub use problem::{PROBLEM_JSON, Problem};
pub use state::{ApiState, KeyRing};
pub use views::{CROSS_TENANT_PERMISSION, READ_PERMISSION, RESUME_PERMISSION, RUN_AS_PERMISSION};

/// The API for `governor`, accepting `keys`: mount it in an app or run it
/// with [`serve`].
pub fn api(governor: Governor, keys: ApiKeys) -> Router {
    router(ApiState::new(governor, keys))
}

/// The API over prepared state.
pub fn router(state: ApiState) -> Router {
    let cors = cors(&state.cors_origins);
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/govern/openapi.json", get(openapi))
        .route("/govern/me", get(auth::me))
        .route("/govern/audit", get(operations::audit))
        .route("/govern/audit/verify", get(operations::verify))
        .route(
            "/govern/pauses",
            get(operations::pauses).post(operations::pause),
        )
        .route("/govern/pauses/lift", post(operations::lift))
        .route("/govern/flows", get(operations::flows))
        .route("/govern/actions", get(operations::actions))
        .route("/govern/events", get(events::events))
        .route("/govern/grants", get(grants::list))
        .route("/govern/grants/{id}", axum::routing::delete(grants::revoke))
        .route("/govern/notifications", get(notifications::list))
        .route(
            "/govern/notifications/{id}/retry",
            post(notifications::retry),
        )
        .route("/govern/approvals/pending", get(approvals::pending))
        .route("/govern/approvals/{id}", get(approvals::show))
        .route("/govern/approvals/{id}/approve", post(approvals::approve))
        .route("/govern/approvals/{id}/reject", post(approvals::reject))
        .route(
            "/govern/executions",
            get(executions::list).post(submit::submit),
        )
        .route("/govern/executions/{id}", get(executions::show))
        .route("/govern/executions/{id}/resume", post(executions::resume))
        .route("/govern/executions/{id}/start", post(submit::start))
        .route("/govern/executions/{id}/complete", post(submit::complete));
    #[cfg(feature = "dashboard")]
    let router = router.route(
        "/links/{token}",
        get(link_page::show).post(link_page::decide),
    );
    let router = router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::guard,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    #[cfg(feature = "dashboard")]
    let router = router.merge(dashboard::routes());
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// CORS for the configured origins only; none configured, none allowed.
fn cors(origins: &[axum::http::HeaderValue]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The OpenAPI 3.1 document (generated by `openapi/generate.py`).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON,
    )
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("no route for `{}`", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("`{method}` is not allowed on `{}`", uri.path()),
    )
}

/// Serves `app` on `listener` until `shutdown` completes; requests in
/// flight then finish before this returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, shutdown).await
}
