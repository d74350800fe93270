//! `GET /govern/events`: the live event stream over a WebSocket.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use governor_core::{Event, EventKind, EventStream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Caller, WS_PROTOCOL};
use crate::extract::Params;
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::READ_PERMISSION;

/// Filters of the stream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventFilter {
    /// Only this action.
    action: Option<String>,
    /// Only this execution.
    execution_id: Option<String>,
    /// Comma-separated event types, e.g. `approval.requested,execution.completed`.
    types: Option<String>,
}

/// A parsed filter.
struct Filter {
    action: Option<String>,
    execution_id: Option<governor_core::ExecutionId>,
    kinds: Vec<EventKind>,
}

impl Filter {
    fn parse(q: EventFilter) -> Result<Self, Problem> {
        let execution_id = q
            .execution_id
            .map(|t| {
                t.parse()
                    .map_err(|_| Problem::bad_request(format!("`{t}` is not an execution id")))
            })
            .transpose()?;
        let kinds = q
            .types
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse()
                    .map_err(|_| Problem::bad_request(format!("`{t}` is not an event type")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            action: q.action,
            execution_id,
            kinds,
        })
    }

    fn accepts(&self, e: &Event) -> bool {
        self.action.as_deref().is_none_or(|a| *e.action == *a)
            && self.execution_id.is_none_or(|id| e.execution_id == id)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
    }
}

/// Upgrades to a WebSocket that receives every event (as its JSON
/// envelope) of this instance that passes the filter, as it happens. A
/// slow reader that falls behind gets `{"type":"stream.lagged","missed":n}`
/// and the stream goes on. Needs `governor:read`.
pub(crate) async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Params(q): Params<EventFilter>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let caller = Caller(state.keys.authenticate_upgrade(&headers)?);
    if !caller.may(READ_PERMISSION) {
        return Err(Problem::forbidden(format!(
            "the event stream needs `{READ_PERMISSION}`, which `{}` lacks",
            caller.0.id
        )));
    }
    let filter = Filter::parse(q)?;
    let upgrade = upgrade.map_err(|e| {
        Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket-required",
            format!("/govern/events is a WebSocket: {e}"),
        )
    })?;
    // Subscribe before answering, so nothing between the upgrade and the
    // first read is missed.
    let stream = state.governor.events().subscribe();
    Ok(upgrade
        .protocols([WS_PROTOCOL])
        .on_upgrade(move |socket| forward(socket, stream, filter)))
}

async fn forward(mut socket: WebSocket, mut stream: EventStream, filter: Filter) {
    loop {
        tokio::select! {
            event = stream.recv() => {
                let text = match event {
                    Ok(e) if filter.accepts(&e) => match serde_json::to_string(&*e) {
                        Ok(text) => text,
                        Err(_) => continue,
                    },
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        format!("{{\"type\":\"stream.lagged\",\"missed\":{missed}}}")
                    }
                    Err(RecvError::Closed) => break,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
