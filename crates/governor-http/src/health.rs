//! `/healthz` and `/readyz`.

use axum::Json as Reply;
use axum::extract::State;
use governor_core::ExecutionQuery;
use serde_json::{Value, json};

use crate::problem::Problem;
use crate::state::ApiState;

/// The process is up.
pub(crate) async fn healthz() -> Reply<Value> {
    Reply(json!({ "status": "ok" }))
}

/// The process can serve: its store answers.
pub(crate) async fn readyz(State(state): State<ApiState>) -> Result<Reply<Value>, Problem> {
    let probe = ExecutionQuery {
        limit: 1,
        ..ExecutionQuery::default()
    };
    state.governor.store().executions(&probe).await?;
    Ok(Reply(json!({ "status": "ready" })))
}
