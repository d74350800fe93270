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
mod events;
mod executions;
mod extract;
mod health;
mod metrics;
mod problem;
mod state;
mod submit;
mod views;

use std::future::Future;

use axum::Router;
use axum::routing::{get, post};
use governor_core::Governor;

pub use auth::{ApiKeys, BadKeyHash, Caller, hash_token};
pub use problem::{PROBLEM_JSON, Problem};
pub use state::ApiState;
pub use views::{READ_PERMISSION, RESUME_PERMISSION};

/// The API for `governor`, accepting `keys`: mount it in an app or run it
/// with [`serve`].
pub fn api(governor: Governor, keys: ApiKeys) -> Router {
    router(ApiState::new(governor, keys))
}

/// The API over prepared state.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/govern/events", get(events::events))
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
        .route("/govern/executions/{id}/complete", post(submit::complete))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
