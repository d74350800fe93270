//! Errors as RFC 9457 `application/problem+json` documents.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor_core::{
    ApprovalError, CompleteError, GovernError, ResumeError, StoreError, StoreErrorKind,
};
use serde_json::{Map, Value, json};

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
    /// Extension members (RFC 9457 §3.2), e.g. the denying `policy`.
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem with `status`, `kind` and `detail`.
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    /// Adds the extension member `key`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
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
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let retry_after = self.extensions.get("retry_after").and_then(Value::as_f64);
        let mut body = self.extensions;
        body.insert(
            "type".into(),
            json!(format!("urn:governor:problem:{}", self.kind)),
        );
        let title = self.status.canonical_reason().unwrap_or("Error");
        body.insert("title".into(), json!(title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            // Whole seconds, rounded up, as Retry-After wants.
            let whole = format!("{}", seconds.ceil().max(0.0) as u64);
            if let Ok(v) = HeaderValue::from_str(&whole) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
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
            ApprovalError::SameApproverAcrossStages { .. } => {
                (StatusCode::FORBIDDEN, "same-approver-across-stages")
            }
            ApprovalError::Changed { .. } => (StatusCode::CONFLICT, "changed-since-seen"),
            ApprovalError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApprovalError::NotEditable { .. } => (StatusCode::CONFLICT, "not-editable"),
            ApprovalError::InvalidEdit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-edit"),
            ApprovalError::GrantRefused { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "grant-refused")
            }
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

impl From<GovernError> for Problem {
    fn from(e: GovernError) -> Self {
        let detail = e.to_string();
        match e {
            GovernError::Denied {
                execution_id,
                policy,
                rule,
                reason,
                ..
            } => Self::new(StatusCode::FORBIDDEN, "denied", detail)
                .with("execution_id", execution_id.to_string())
                .with("policy", policy)
                .with("rule", rule)
                .with("reason", reason),
            GovernError::Rejected {
                execution_id,
                policy,
                reason,
            } => Self::new(StatusCode::FORBIDDEN, "rejected", detail)
                .with("execution_id", execution_id.to_string())
                .with("policy", policy)
                .with("reason", reason),
            GovernError::Invalid {
                execution_id,
                policy,
                errors,
                ..
            } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-arguments",
                detail,
            )
            .with("execution_id", execution_id.to_string())
            .with("policy", policy)
            .with("errors", serde_json::to_value(errors).unwrap_or_default()),
            GovernError::RateLimited {
                execution_id,
                policy,
                retry_after,
                ..
            } => Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
                .with("execution_id", execution_id.to_string())
                .with("policy", policy)
                .with("retry_after", retry_after.as_secs_f64()),
            GovernError::Paused { execution_id, .. } => {
                Self::new(StatusCode::CONFLICT, "paused", detail)
                    .with("execution_id", execution_id.to_string())
            }
            GovernError::Pending { execution_id } => {
                Self::new(StatusCode::CONFLICT, "pending", detail)
                    .with("execution_id", execution_id.to_string())
            }
            GovernError::Cancelled { execution_id } => {
                Self::new(StatusCode::CONFLICT, "cancelled", detail)
                    .with("execution_id", execution_id.to_string())
            }
            GovernError::Serialization { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unserializable", detail)
            }
            GovernError::Store(s) => s.into(),
            _ => {
                tracing::error!("governed call failed on the server: {detail}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server-error", detail)
            }
        }
    }
}

impl From<CompleteError> for Problem {
    fn from(e: CompleteError) -> Self {
        match e {
            CompleteError::NotFound { .. } => Self::not_found(e.to_string()),
            CompleteError::NotRunning { .. } => {
                Self::new(StatusCode::CONFLICT, "not-running", e.to_string())
            }
            CompleteError::NotExternal { .. } => {
                Self::new(StatusCode::CONFLICT, "not-external", e.to_string())
            }
            CompleteError::Store(s) => s.into(),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server-error",
                e.to_string(),
            ),
        }
    }
}
