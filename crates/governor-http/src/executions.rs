//! `/govern/executions`: list, show and resume executions.

use axum::Json as Reply;
use axum::extract::State;
use chrono::{DateTime, Utc};
use governor_core::{
    Event, EventQuery, Execution, ExecutionId, ExecutionQuery, ExecutionStatus, Snapshot,
};
use serde::{Deserialize, Serialize};

use crate::approvals::visible;
use crate::auth::Caller;
use crate::extract::{Id, Params};
use crate::problem::Problem;
use crate::state::ApiState;
use crate::views::{Page, RESUME_PERMISSION, can_view, public};

/// Filters of `GET /govern/executions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Comma-separated statuses, e.g. `completed,failed`.
    status: Option<String>,
    /// Only this action.
    action: Option<String>,
    /// Only calls made by this principal id.
    principal: Option<String>,
    /// Created at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Page size (default 50, at most 500).
    limit: Option<usize>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Reply<Page<Execution>>, Problem> {
    let statuses = q
        .status
        .as_deref()
        .map(parse_statuses)
        .transpose()?
        .unwrap_or_default();
    // Without the read permission one sees one's own calls and those one
    // is (or was) asked to decide: `can_view` below keeps just those.
    let principal = q.principal;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let query = ExecutionQuery {
        statuses,
        action: q.action,
        principal,
        since: q.since,
        until: q.until,
        before: cursor(q.cursor.as_deref())?,
        limit,
    };
    let page = filtered_page(&state, query, limit, |e| can_view(&caller, e)).await?;
    Ok(Reply(Page {
        items: page.items.into_iter().map(public).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// An execution with its timeline.
#[derive(Debug, Serialize)]
pub(crate) struct Detail {
    execution: Execution,
    events: Vec<Event>,
    snapshots: Vec<Snapshot>,
}

pub(crate) async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Reply<Detail>, Problem> {
    let execution = visible(&state, &caller, id).await?;
    let store = state.governor.store();
    let events = store
        .events(&EventQuery {
            execution_id: Some(id),
            limit: 10_000,
            ..EventQuery::default()
        })
        .await?;
    let snapshots = store.snapshots(id).await?;
    Ok(Reply(Detail {
        execution: public(execution),
        events,
        snapshots,
    }))
}

pub(crate) async fn resume(
    State(state): State<ApiState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Reply<Execution>, Problem> {
    crate::approvals::visible(&state, &caller, id).await?;
    if !caller.may(RESUME_PERMISSION) {
        return Err(Problem::forbidden(format!(
            "resuming needs the `{RESUME_PERMISSION}` permission, which `{}` lacks",
            caller.0.id
        )));
    }
    Ok(Reply(public(state.governor.resume(id).await?)))
}

/// Parses `a,b,c` into statuses, naming the first unknown one.
fn parse_statuses(text: &str) -> Result<Vec<ExecutionStatus>, Problem> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| Problem::bad_request(format!("`{s}` is not an execution status")))
        })
        .collect()
}

/// Parses a `cursor` parameter.
pub(crate) fn cursor(text: Option<&str>) -> Result<Option<ExecutionId>, Problem> {
    text.map(|c| {
        c.parse().map_err(|_| {
            Problem::bad_request(format!("`cursor={c}` is not a cursor from a previous page"))
        })
    })
    .transpose()
}

/// The most stored executions one listing reads while filtering out what
/// the caller may not see; past it the page ends early with a cursor.
const SCAN_BUDGET: usize = 5_000;

/// Up to `limit` executions matching `query` that `keep` accepts, newest
/// first, reading further pages of the store while `keep` filters some
/// out, but never more than [`SCAN_BUDGET`] rows: a page may then hold
/// fewer than `limit` (even none) with `next_cursor` set to go on from.
/// `next_cursor` is set whenever more may follow.
pub(crate) async fn filtered_page(
    state: &ApiState,
    mut query: ExecutionQuery,
    limit: usize,
    keep: impl Fn(&Execution) -> bool,
) -> Result<Page<Execution>, Problem> {
    let store = state.governor.store();
    let mut items = Vec::with_capacity(limit);
    let mut scanned = 0;
    loop {
        if scanned >= SCAN_BUDGET {
            return Ok(Page {
                next_cursor: query.before,
                items,
            });
        }
        if scanned > 0 {
            // Filtering drops rows: read on in larger steps.
            query.limit = query.limit.max(500);
        }
        let batch = store.executions(&query).await?;
        scanned += batch.len();
        let exhausted = batch.len() < query.effective_limit();
        for e in batch {
            query.before = Some(e.id);
            if keep(&e) {
                items.push(e);
                if items.len() == limit {
                    return Ok(Page {
                        next_cursor: query.before,
                        items,
                    });
                }
            }
        }
        if exhausted {
            return Ok(Page {
                items,
                next_cursor: None,
            });
        }
    }
}
