//! `/govern/notifications`: the outbox, for operators: what was told to
//! whom, what is still due, what failed for good; and sending a dead one
//! again.

use axum::Json as Reply;
use axum::extract::State;
use chrono::{DateTime, Utc};
use governor_core::{
    DeliveryState, ExecutionId, Notification, NotificationKind, NotificationQuery,
};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::extract::{Id, Params};
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::{READ_PERMISSION, RESUME_PERMISSION, in_tenant};

/// Filters of `GET /govern/notifications`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotificationsQuery {
    /// Only those about this execution (anyone who may see it).
    execution_id: Option<ExecutionId>,
    /// Only those in this state: `pending`, `delivered` or `dead`.
    state: Option<String>,
    /// Only those after this id (the previous page's `next_after`).
    after: Option<uuid::Uuid>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<usize>,
}

/// One notification as listed (without its payload).
#[derive(Debug, Serialize)]
pub(crate) struct NotificationView {
    id: uuid::Uuid,
    execution_id: ExecutionId,
    kind: NotificationKind,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<String>,
    state: DeliveryState,
    attempts: u32,
    created_at: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<DateTime<Utc>>,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            execution_id: n.execution_id,
            kind: n.kind,
            target: n.target,
            recipient: n.recipient,
            state: n.state,
            attempts: n.attempts,
            created_at: n.created_at,
            next_attempt_at: n.next_attempt_at,
            last_error: n.last_error,
            delivered_at: n.delivered_at,
        }
    }
}

/// A page of notifications; pass `next_after` as `after` for the next.
#[derive(Debug, Serialize)]
pub(crate) struct NotificationPage {
    items: Vec<NotificationView>,
    next_after: Option<uuid::Uuid>,
}

/// Whether `caller` may see `n`: its tenant's (as the notification keeps it).
fn in_callers_tenant(caller: &Caller, n: &Notification) -> bool {
    in_tenant(caller, n.tenant().as_deref())
}

/// `GET /govern/notifications`.
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<NotificationsQuery>,
) -> Result<Reply<NotificationPage>, Problem> {
    match q.execution_id {
        Some(id) => {
            crate::approvals::visible(&state, &caller, id).await?;
        }
        None if !caller.may(READ_PERMISSION) => {
            return Err(Problem::forbidden(format!(
                "listing every notification needs `{READ_PERMISSION}`, which `{}` lacks; give `execution_id` for one you may see",
                caller.0.id
            )));
        }
        None => {}
    }
    let state_filter = q
        .state
        .as_deref()
        .map(|s| {
            DeliveryState::parse(s).ok_or_else(|| {
                Problem::bad_request(format!(
                    "`{s}` is not a delivery state: pending, delivered or dead"
                ))
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let found = state
        .governor
        .notifications(&NotificationQuery {
            execution_id: q.execution_id,
            state: state_filter,
            after: q.after,
            limit: limit + 1,
        })
        .await?;
    let more = found.len() > limit;
    let items: Vec<NotificationView> = found
        .into_iter()
        .take(limit)
        .filter(|n| in_callers_tenant(&caller, n))
        .map(NotificationView::from)
        .collect();
    Ok(Reply(NotificationPage {
        next_after: more.then(|| items.last().map(|n| n.id)).flatten(),
        items,
    }))
}

/// `POST /govern/notifications/{id}/retry`: sends a dead notification
/// again (needs `governor:resume`, as re-running things by hand does).
pub(crate) async fn retry(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Reply<NotificationView>, Problem> {
    if !caller.may(RESUME_PERMISSION) {
        return Err(Problem::forbidden(format!(
            "retrying a notification needs `{RESUME_PERMISSION}`, which `{}` lacks",
            caller.0.id
        )));
    }
    let id = id.as_uuid();
    let missing = || Problem::not_found(format!("no dead notification {id}"));
    let dead = state
        .governor
        .notifications(&NotificationQuery {
            state: Some(DeliveryState::Dead),
            limit: 10_000,
            ..NotificationQuery::default()
        })
        .await?;
    if !dead
        .iter()
        .any(|n| n.id == id && in_callers_tenant(&caller, n))
    {
        return Err(missing());
    }
    state
        .governor
        .retry_notification(id)
        .await?
        .map(|n| Reply(n.into()))
        .ok_or_else(missing)
}
