//! The approval console at `/dashboard`: static files compiled into the
//! binary (no build step, no Node at build time), served with a
//! Content-Security-Policy that allows only this origin's own script and
//! style, no inline code, no framing and no cross-origin connections.
//! Everything the page does goes through the authenticated API.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../dashboard/index.html");

/// The page's files: its modules, style and icon.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../dashboard/app.js")),
    ("api.js", JS, include_str!("../dashboard/api.js")),
    ("detail.js", JS, include_str!("../dashboard/detail.js")),
    ("dom.js", JS, include_str!("../dashboard/dom.js")),
    ("format.js", JS, include_str!("../dashboard/format.js")),
    ("pending.js", JS, include_str!("../dashboard/pending.js")),
    ("schema.js", JS, include_str!("../dashboard/schema.js")),
    ("state.js", JS, include_str!("../dashboard/state.js")),
    ("views.js", JS, include_str!("../dashboard/views.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/style.css"),
    ),
    ("favicon.svg", SVG, include_str!("../dashboard/favicon.svg")),
];
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The policy every dashboard response carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes (merged into the API router).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route(
            "/dashboard/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        // Browsers ask for it whatever the page says.
        .route("/favicon.ico", get(|| async { asset(ICON, SVG) }));
    for &(name, content_type, body) in FILES {
        router = router.route(
            &format!("/dashboard/{name}"),
            get(move || async move { asset(body, content_type) }),
        );
    }
    router
}

const ICON: &str = include_str!("../dashboard/favicon.svg");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}
