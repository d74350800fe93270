//! Errors as RFC 9457 `application/problem+json` documents.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor_core::{ApprovalError, ResumeError, StoreError, StoreErrorKind};
use serde_json::json;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer: an HTTP status, a stable kind (the `type` URI is
/// `urn:governor:problem:<kind>`) and a detail meant for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short, stable, machine-readable kind, e.g. `not-an-approver`.
    pub kind: &'static str,
    /// What went wrong, for people.
    pub detail: String,
}

impl Problem {
    /// A problem with `status`, `kind` and `detail`.
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 401: no credentials, or credentials nobody issued.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404: nothing by that name or id.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 422: well-formed, but the values are not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
    }

    /// The document's `type` member.
    pub fn type_uri(&self) -> String {
        format!("urn:governor:problem:{}", self.kind)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": self.type_uri(),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"governor\""),
            );
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        Self::from(&e)
    }
}

impl From<&StoreError> for Problem {
    fn from(e: &StoreError) -> Self {
        match e.kind() {
            StoreErrorKind::NotFound => Self::not_found(e.to_string()),
            StoreErrorKind::Conflict | StoreErrorKind::AlreadyExists => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            _ => {
                tracing::error!("store error behind an API request: {e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "the store could not be reached; try again",
                )
            }
        }
    }
}

impl From<ApprovalError> for Problem {
    fn from(e: ApprovalError) -> Self {
        let (status, kind) = match &e {
            ApprovalError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            ApprovalError::NotAnApprover { .. } => (StatusCode::FORBIDDEN, "not-an-approver"),
            ApprovalError::SelfApproval { .. } => (StatusCode::FORBIDDEN, "self-approval"),
            ApprovalError::NotPending { .. } => (StatusCode::CONFLICT, "not-pending"),
            ApprovalError::AlreadyDecided { .. } => (StatusCode::CONFLICT, "already-decided"),
            ApprovalError::Expired { .. } => (StatusCode::CONFLICT, "expired"),
            ApprovalError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApprovalError::NotEditable { .. } => (StatusCode::CONFLICT, "not-editable"),
            ApprovalError::InvalidEdit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-edit"),
            ApprovalError::ReasonRequired { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "reason-required")
            }
            ApprovalError::Store(s) => return s.into(),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "decision-failed"),
        };
        Self::new(status, kind, e.to_string())
    }
}

impl From<ResumeError> for Problem {
    fn from(e: ResumeError) -> Self {
        let (status, kind) = match &e {
            ResumeError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            ResumeError::NotApproved { .. } => (StatusCode::CONFLICT, "not-approved"),
            ResumeError::NotRegistered { .. } => (StatusCode::CONFLICT, "not-registered"),
            ResumeError::RedactedInputs { .. } => (StatusCode::CONFLICT, "redacted-inputs"),
            ResumeError::NotWhatWasApproved { .. } => {
                (StatusCode::CONFLICT, "not-what-was-approved")
            }
            ResumeError::Paused { .. } => (StatusCode::CONFLICT, "paused"),
            ResumeError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ResumeError::Store(s) => return s.into(),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "resume-failed"),
        };
        Self::new(status, kind, e.to_string())
    }
}
