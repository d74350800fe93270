//! Extractors that answer malformed requests with problem+json.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use governor_core::ExecutionId;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A JSON request body. An empty body is `T::default()`; a body in
/// another media type is 415; malformed JSON is 400; JSON of the wrong
/// shape (unknown fields, wrong types) is 422.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
            });
        let limit = req
            .extensions()
            .get::<crate::limits::BodyLimit>()
            .map(|l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    match limit {
                        Some(n) => {
                            format!("the body is over the limit of {n} bytes (max_body_bytes)")
                        }
                        None => "the body is over this server's limit".to_owned(),
                    },
                )
            } else {
                Problem::bad_request(format!("could not read the body: {e}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(T::default()));
        }
        if json_type == Some(false) {
            return Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the body must be `application/json`",
            ));
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            if e.is_data() {
                Problem::unprocessable(format!("the body does not fit: {e}"))
            } else {
                Problem::bad_request(format!("the body is not valid JSON: {e}"))
            }
        })
    }
}

/// Query parameters; ones that do not parse are 400 naming the parameter.
#[derive(Debug)]
pub(crate) struct Params<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| Problem::bad_request(format!("bad query `{query}`: {}", e.body_text())))
    }
}

/// An execution id from the path; anything else is 400.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Id(pub(crate) ExecutionId);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| Problem::bad_request(e.body_text()))?;
        text.parse()
            .map(Id)
            .map_err(|_| Problem::bad_request(format!("`{text}` is not an execution id")))
    }
}
