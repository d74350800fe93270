//! Converting between rows and governor's types.

use std::sync::Arc;

use governor_core::{
    ApprovalRequest, Event, EventKind, Execution, ExecutionId, ExecutionStatus, Failure, Json,
    Lease, Principal, StoreError,
};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

pub(crate) use governor_core::store::{decode_json, encode_json, from_nanos, to_nanos};

/// Column `i` of `row`, or a `Corrupt` error naming it.
pub(crate) fn get<'r, T: FromSql<'r>>(
    op: &'static str,
    row: &'r Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::corrupt(op, format!("column {i}: {e}")))
}

/// The columns [`execution`] reads, in order.
pub(crate) const EXECUTION_COLUMNS: &str = "id, action, status, principal, inputs, output, failure, approval, \
     lease_owner, lease_until, created_at, updated_at, finished_at, version";

pub(crate) fn execution(op: &'static str, row: &Row) -> Result<Execution, StoreError> {
    let text = |i: usize| get::<&str>(op, row, i);
    let opt = |i: usize| get::<Option<&str>>(op, row, i);
    let status: ExecutionStatus = text(2)?.parse().map_err(|e| StoreError::corrupt(op, e))?;
    let principal: Principal = decode_json(op, "principal", text(3)?)?;
    let inputs =
        Json::parse(text(4)?).map_err(|e| StoreError::corrupt(op, format!("inputs: {e}")))?;
    let output = opt(5)?
        .map(Json::parse)
        .transpose()
        .map_err(|e| StoreError::corrupt(op, format!("output: {e}")))?;
    let failure: Option<Failure> = opt(6)?.map(|t| decode_json(op, "failure", t)).transpose()?;
    let approval: Option<ApprovalRequest> = opt(7)?
        .map(|t| decode_json(op, "approval", t))
        .transpose()?;
    let lease = match (opt(8)?, get::<Option<i64>>(op, row, 9)?) {
        (Some(owner), Some(until)) => Some(Lease {
            owner: owner.to_owned(),
            until: from_nanos(until),
        }),
        _ => None,
    };
    Ok(Execution {
        id: ExecutionId::from_uuid(get(op, row, 0)?),
        action: Arc::from(text(1)?),
        status,
        principal: Arc::new(principal),
        inputs,
        output,
        failure,
        approval,
        lease,
        created_at: from_nanos(get(op, row, 10)?),
        updated_at: from_nanos(get(op, row, 11)?),
        finished_at: get::<Option<i64>>(op, row, 12)?.map(from_nanos),
        version: u64::try_from(get::<i64>(op, row, 13)?).unwrap_or(0),
    })
}

/// The columns [`event`] reads, in order.
pub(crate) const EVENT_COLUMNS: &str = "e.id, e.execution_id, e.kind, e.time, x.action, e.data";

pub(crate) fn event(op: &'static str, row: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        id: get(op, row, 0)?,
        execution_id: ExecutionId::from_uuid(get(op, row, 1)?),
        kind: get::<&str>(op, row, 2)?
            .parse::<EventKind>()
            .map_err(|e| StoreError::corrupt(op, e))?,
        time: from_nanos(get(op, row, 3)?),
        action: Arc::from(get::<&str>(op, row, 4)?),
        data: Json::parse(get::<&str>(op, row, 5)?)
            .map_err(|e| StoreError::corrupt(op, format!("event data: {e}")))?,
    })
}
