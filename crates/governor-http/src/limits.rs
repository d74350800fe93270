//! What one request may cost the server: body size, URI length, header
//! count, time, and how many requests run at once. Each limit answers
//! with a problem document naming it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;
use crate::state::ApiState;

/// The limits of one server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest request body, in bytes (default 2 MiB).
    pub max_body_bytes: usize,
    /// The longest request target (path and query), in bytes (default
    /// 8 KiB).
    pub max_uri_bytes: usize,
    /// The most request headers (default 100).
    pub max_headers: usize,
    /// The longest a request may take (default 30 s); a submission waiting
    /// for a decision may take its `wait_seconds` (up to the server's
    /// longest wait), and the event stream is not limited once open.
    pub request_timeout: Duration,
    /// The most requests handled at once (default 1,024); more answer 503
    /// at once instead of queueing without bound.
    pub max_concurrent: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 << 20,
            max_uri_bytes: 8 << 10,
            max_headers: 100,
            request_timeout: Duration::from_secs(30),
            max_concurrent: 1024,
        }
    }
}

/// The body limit in force, for the extractor's message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// The requests running now, bounded by [`Limits::max_concurrent`].
#[derive(Debug)]
pub(crate) struct InFlight(tokio::sync::Semaphore);

impl InFlight {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self(tokio::sync::Semaphore::new(limit.max(1))))
    }
}

/// Middleware: checks a request against the limits before it is routed,
/// and bounds how long it runs.
pub(crate) async fn guard(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let limits = &state.limits;
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.max_uri_bytes {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!(
                "the request target is {target} bytes; the limit is {} (max_uri_bytes)",
                limits.max_uri_bytes
            ),
        )
        .into_response();
    }
    let headers = req.headers().len();
    if headers > limits.max_headers {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too-many-headers",
            format!(
                "the request has {headers} headers; the limit is {} (max_headers)",
                limits.max_headers
            ),
        )
        .into_response();
    }
    let Ok(_permit) = state.in_flight.0.try_acquire() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "{} requests are being handled; try again shortly (max_concurrent)",
                limits.max_concurrent
            ),
        )
        .with("retry_after", 1)
        .into_response();
    };
    req.extensions_mut()
        .insert(BodyLimit(limits.max_body_bytes));
    let timeout = time_allowed(&state, &req);
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s (request_timeout)",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// How long `req` may take: submissions may wait for a decision as long as
/// the server allows; an event stream's upgrade is quick and the stream
/// itself runs outside this request.
fn time_allowed(state: &ApiState, req: &Request) -> Duration {
    let waits =
        req.method() == axum::http::Method::POST && req.uri().path() == "/govern/executions";
    if waits {
        state
            .limits
            .request_timeout
            .max(state.max_wait + Duration::from_secs(10))
    } else {
        state.limits.request_timeout
    }
}
