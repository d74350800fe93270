//! Governance for agents in any language: submit an action by name, start
//! it once approved, report its outcome.

use std::time::Duration;

use axum::Json as Reply;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use governor_core::{
    Admitted, Args, Call, Execution, ExecutionId, ExecutionStatus, GovernError, Governor,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::extract::{Body, Id};
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::{RUN_AS_PERMISSION, is_owner, same_tenant};

/// `POST /govern/executions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitBody {
    /// The action, as configured on the server.
    action: String,
    /// Its arguments by name.
    #[serde(default)]
    arguments: Map<String, Value>,
    /// Seconds to hold the connection for an approval decision (sync
    /// pattern; capped by the server, 300 by default). Without it a
    /// pending call answers 202 at once.
    wait_seconds: Option<f64>,
}

pub(crate) async fn submit(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<SubmitBody>,
) -> Result<Response, Problem> {
    let answer = admit(&state, &caller, body).await;
    let outcome = match &answer {
        Ok(r) if r.status() == StatusCode::ACCEPTED => "pending",
        Ok(_) => "allowed",
        Err(p) => p.kind,
    };
    state.metrics.count("governor_submissions_total", outcome);
    answer
}

async fn admit(state: &ApiState, caller: &Caller, body: SubmitBody) -> Result<Response, Problem> {
    if body.action.trim().is_empty() {
        return Err(Problem::unprocessable("`action` must name an action"));
    }
    let wait = wait_of(body.wait_seconds, state.max_wait)?;
    let governor = &state.governor;
    let action = governor.external_action(&body.action).ok_or_else(|| {
        Problem::not_found(format!(
            "no action `{}` is configured on this server for agents to submit",
            body.action
        ))
    })?;
    let args = body
        .arguments
        .into_iter()
        .fold(Args::new(), |args, (name, value)| args.value(&name, value));
    let call = Call::new(args).principal((*caller.0).clone());
    match action.admit(call).await {
        Ok(admitted) => Ok(allowed(admitted)),
        Err(GovernError::Pending { execution_id }) => {
            decided_within(governor, execution_id, wait).await
        }
        Err(e) => Err(e.into()),
    }
}

fn wait_of(seconds: Option<f64>, max: Duration) -> Result<Duration, Problem> {
    match seconds {
        None => Ok(Duration::ZERO),
        // Clamped before converting: `from_secs_f64` panics past u64 seconds.
        Some(s) if s.is_finite() && s >= 0.0 => {
            Ok(Duration::from_secs_f64(s.min(max.as_secs_f64())))
        }
        Some(s) => Err(Problem::unprocessable(format!(
            "`wait_seconds` must be a non-negative number, not {s}"
        ))),
    }
}

/// 200: run it now with these arguments, then report.
fn allowed(a: Admitted) -> Response {
    let id = a.execution_id;
    Reply(json!({
        "execution_id": id,
        "status": ExecutionStatus::Running,
        "arguments": a.arguments,
        "report_by": a.report_by,
        "complete_url": format!("/govern/executions/{id}/complete"),
    }))
    .into_response()
}

/// 202: waiting for a person; poll, then start.
fn pending(id: ExecutionId) -> Response {
    (
        StatusCode::ACCEPTED,
        Reply(json!({
            "execution_id": id,
            "status": ExecutionStatus::AwaitingApproval,
            "poll_url": format!("/govern/executions/{id}"),
            "start_url": format!("/govern/executions/{id}/start"),
        })),
    )
        .into_response()
}

/// Waits up to `wait` for a decision on `id`: approved starts it (200),
/// rejected or expired is 403, still waiting is 202.
async fn decided_within(
    governor: &Governor,
    id: ExecutionId,
    wait: Duration,
) -> Result<Response, Problem> {
    let execution = if wait.is_zero() {
        None
    } else {
        Some(governor.wait_for_decision(id, wait).await?)
    };
    match execution.map(|e| (e.status, e)) {
        Some((ExecutionStatus::Approved, _)) => Ok(allowed(governor.start_external(id).await?)),
        Some((ExecutionStatus::Rejected | ExecutionStatus::Expired, e)) => Err(refused(&e)),
        _ => Ok(pending(id)),
    }
}

fn refused(e: &Execution) -> Problem {
    let reason = e
        .failure
        .as_ref()
        .map_or_else(|| e.status.to_string(), |f| f.message.clone());
    Problem::new(
        StatusCode::FORBIDDEN,
        "rejected",
        format!("execution {} was {}: {reason}", e.id, e.status),
    )
    .with("execution_id", e.id.to_string())
    .with("reason", reason)
}

/// Only the requester (the same id in the same tenant), or someone with
/// [`RUN_AS_PERMISSION`] in that tenant, may start or report: starting
/// hands over the arguments, sealed ones included.
fn may_run(caller: &Caller, execution: &Execution) -> Result<(), Problem> {
    if is_owner(caller, &execution.principal)
        || (caller.may(RUN_AS_PERMISSION) && same_tenant(caller, &execution.principal))
    {
        return Ok(());
    }
    Err(Problem::forbidden(format!(
        "only the requester of execution {} (or someone with `{RUN_AS_PERMISSION}`) may run it",
        execution.id
    )))
}

/// Checks that `caller` may run `id`; one they may not even see answers
/// as a missing one does.
async fn runnable(state: &ApiState, caller: &Caller, id: ExecutionId) -> Result<(), Problem> {
    let execution = crate::approvals::visible(state, caller, id).await?;
    may_run(caller, &execution)
}

/// `POST /govern/executions/{id}/start`: an approved execution starts.
pub(crate) async fn start(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, Problem> {
    runnable(&state, &caller, id).await?;
    Ok(allowed(
        state
            .governor
            .start_external_by(id, Some(&caller.0.id))
            .await?,
    ))
}

/// `POST /govern/executions/{id}/complete`: exactly one of `output` and
/// `error`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    /// `null` is an output; a missing member is not.
    #[serde(default, deserialize_with = "present")]
    output: Option<Value>,
    error: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

pub(crate) async fn complete(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<CompleteBody>,
) -> Result<Reply<Execution>, Problem> {
    let outcome = match (body.output, body.error) {
        (Some(output), None) => Ok(output),
        (None, Some(error)) => Err(error),
        _ => {
            return Err(Problem::unprocessable(
                "report exactly one of `output` and `error`",
            ));
        }
    };
    runnable(&state, &caller, id).await?;
    Ok(Reply(crate::views::public(
        state.governor.complete_external(id, outcome).await?,
    )))
}
