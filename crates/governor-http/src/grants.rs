//! `/govern/grants`: the standing grants in force, and their revocation.

use axum::Json as Reply;
use axum::extract::State;
use governor_core::{GRANTS_PERMISSION, Grant, MAX_GRANTS_LISTED};
use serde::Deserialize;

use crate::auth::Caller;
use crate::extract::{Id, Params};
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::{READ_PERMISSION, in_tenant};

/// Whether `caller` may see `grant`: readers and grant managers of its
/// tenant (any tenant with `governor:cross-tenant`), who gave it, and whom
/// it covers.
fn can_see(caller: &Caller, grant: &Grant) -> bool {
    in_tenant(caller, grant.tenant.as_deref())
        && (caller.may(READ_PERMISSION)
            || caller.may(GRANTS_PERMISSION)
            || caller.0.id == grant.granted_by
            || caller.0.id == grant.principal)
}

/// Filters of `GET /govern/grants`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantsQuery {
    /// Only grants for this action.
    action: Option<String>,
    /// At most this many (default 100, at most 10,000).
    limit: Option<usize>,
}

/// `GET /govern/grants`: the grants in force that the caller may see,
/// oldest first.
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<GrantsQuery>,
) -> Result<Reply<Vec<Grant>>, Problem> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_GRANTS_LISTED);
    let grants = state.governor.grants(MAX_GRANTS_LISTED).await?;
    Ok(Reply(
        grants
            .into_iter()
            .filter(|g| can_see(&caller, g))
            .filter(|g| q.action.as_ref().is_none_or(|a| *a == g.action))
            .take(limit)
            .collect(),
    ))
}

/// `DELETE /govern/grants/{id}?reason=...`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeQuery {
    /// Why (recorded in the audit log).
    reason: Option<String>,
}

/// `DELETE /govern/grants/{id}`: revokes a grant (audited); the calls it
/// covered ask again.
pub(crate) async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
    Params(q): Params<RevokeQuery>,
) -> Result<Reply<Grant>, Problem> {
    let id = id.as_uuid();
    let missing = || Problem::not_found(format!("no standing grant {id} is in force"));
    let grants = state.governor.grants(MAX_GRANTS_LISTED).await?;
    if !grants.iter().any(|g| g.id == id && can_see(&caller, g)) {
        return Err(missing());
    }
    let reason = q
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("no reason given");
    state
        .governor
        .revoke_grant(id, &caller.0, reason)
        .await?
        .map(Reply)
        .ok_or_else(missing)
}
