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
/// and the stream goes on. Needs `governor:read`, and sees its own
/// tenant's executions only unless `governor:cross-tenant`. The token is
/// checked again every [`REAUTHENTICATE_EVERY`]: once it has expired (a
/// JWT) or its key is gone, the socket is closed with 1008.
pub(crate) async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Params(q): Params<EventFilter>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let (principal, token) = state.keys.current().authenticate_upgrade(&headers)?;
    let caller = Caller(principal);
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
    let session = Session {
        tenants: Tenants::of(&caller),
        token,
        state,
    };
    Ok(upgrade
        .protocols([WS_PROTOCOL])
        .on_upgrade(move |socket| forward(socket, stream, filter, session)))
}

/// How often an open event stream's token is checked again.
pub(crate) const REAUTHENTICATE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Who is listening, for the checks made while the socket is open.
struct Session {
    tenants: Tenants,
    token: String,
    state: ApiState,
}

/// Which executions' events a listener may see.
enum Tenants {
    /// Every tenant's.
    All,
    /// Only those asked for by principals of this tenant (`None`: none).
    Only {
        tenant: Option<String>,
        /// Execution → whether it is this tenant's, as looked up.
        known: std::collections::HashMap<governor_core::ExecutionId, bool>,
    },
}

impl Tenants {
    fn of(caller: &Caller) -> Self {
        if caller.may(crate::views::CROSS_TENANT_PERMISSION) {
            Self::All
        } else {
            Self::Only {
                tenant: caller.0.tenant.clone(),
                known: std::collections::HashMap::new(),
            }
        }
    }

    /// Whether `e` is about an execution of the listener's tenant.
    async fn allow(&mut self, e: &Event, state: &ApiState) -> bool {
        let Self::Only { tenant, known } = self else {
            return true;
        };
        if let Some(mine) = known.get(&e.execution_id) {
            return *mine;
        }
        let mine = match state.governor.execution(e.execution_id).await {
            Ok(Some(x)) => x.principal.tenant == *tenant,
            // Not stored (yet) or unreadable: not shown.
            _ => return false,
        };
        if known.len() >= 10_000 {
            known.clear();
        }
        known.insert(e.execution_id, mine);
        mine
    }
}

async fn forward(
    mut socket: WebSocket,
    mut stream: EventStream,
    filter: Filter,
    mut session: Session,
) {
    let mut recheck = tokio::time::interval(REAUTHENTICATE_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = recheck.tick() => {
                if session.state.keys.current().authenticate(&session.token).is_none() {
                    let close = axum::extract::ws::CloseFrame {
                        code: axum::extract::ws::close_code::POLICY,
                        reason: "the token has expired or was revoked".into(),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    break;
                }
            }
            event = stream.recv() => {
                let text = match event {
                    Ok(e) if filter.accepts(&e) && session.tenants.allow(&e, &session.state).await => {
                        match serde_json::to_string(&*e) {
                            Ok(text) => text,
                            Err(_) => continue,
                        }
                    }
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
