//! Converting between rows and governor's types.

use std::sync::Arc;

use governor_core::{
    ApprovalRequest, Event, EventKind, Execution, ExecutionId, ExecutionStatus, Failure, Json,
    Lease, Principal, StoreError,
};
use rusqlite::Row;

/// Ids are stored as their 16 bytes, which sort like the ids.
pub(crate) fn blob(id: uuid::Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

fn uuid_at(op: &'static str, row: &Row<'_>, i: usize) -> Result<uuid::Uuid, StoreError> {
    let bytes = row
        .get_ref(i)
        .map_err(|e| crate::error::map(op, e))?
        .as_blob()
        .map_err(|e| StoreError::corrupt(op, format!("stored id: {e}")))?;
    uuid::Uuid::from_slice(bytes).map_err(|e| StoreError::corrupt(op, format!("stored id: {e}")))
}

/// Column `i` as text borrowed from the row (no copy).
fn text_at<'r>(op: &'static str, row: &'r Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    opt_text_at(op, row, i)?.ok_or_else(|| StoreError::corrupt(op, format!("column {i} is NULL")))
}

/// Column `i` as text borrowed from the row, or `None` for NULL.
fn opt_text_at<'r>(
    op: &'static str,
    row: &'r Row<'_>,
    i: usize,
) -> Result<Option<&'r str>, StoreError> {
    row.get_ref(i)
        .map_err(|e| crate::error::map(op, e))?
        .as_str_or_null()
        .map_err(|e| StoreError::corrupt(op, format!("column {i}: {e}")))
}

pub(crate) use governor_core::store::{decode_json, encode_json, from_nanos, to_nanos};

/// The columns [`execution`] reads, in order.
pub(crate) const EXECUTION_COLUMNS: &str = "id, action, status, principal, inputs, output, failure, approval, \
     lease_owner, lease_until, created_at, updated_at, finished_at, version";

pub(crate) fn execution(op: &'static str, row: &Row<'_>) -> Result<Execution, StoreError> {
    let get_text = |i: usize| text_at(op, row, i);
    let get_opt = |i: usize| opt_text_at(op, row, i);
    let get_int = |i: usize| -> Result<Option<i64>, StoreError> {
        row.get(i).map_err(|e| crate::error::map(op, e))
    };
    let id = ExecutionId::from_uuid(uuid_at(op, row, 0)?);
    let status: ExecutionStatus = get_text(2)?
        .parse()
        .map_err(|e| StoreError::corrupt(op, e))?;
    let principal: Principal = decode_json(op, "principal", get_text(3)?)?;
    let inputs =
        Json::parse(get_text(4)?).map_err(|e| StoreError::corrupt(op, format!("inputs: {e}")))?;
    let output = get_opt(5)?
        .map(Json::parse)
        .transpose()
        .map_err(|e| StoreError::corrupt(op, format!("output: {e}")))?;
    let failure: Option<Failure> = get_opt(6)?
        .map(|t| decode_json(op, "failure", t))
        .transpose()?;
    let approval: Option<ApprovalRequest> = get_opt(7)?
        .map(|t| decode_json(op, "approval", t))
        .transpose()?;
    let lease = match (get_opt(8)?, get_int(9)?) {
        (Some(owner), Some(until)) => Some(Lease {
            owner: owner.to_owned(),
            until: from_nanos(until),
        }),
        _ => None,
    };
    Ok(Execution {
        id,
        action: Arc::from(get_text(1)?),
        status,
        principal: Arc::new(principal),
        inputs,
        output,
        failure,
        approval,
        lease,
        created_at: from_nanos(get_int(10)?.unwrap_or(0)),
        updated_at: from_nanos(get_int(11)?.unwrap_or(0)),
        finished_at: get_int(12)?.map(from_nanos),
        version: get_int(13)?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
    })
}

/// The columns [`event`] reads, in order.
pub(crate) const EVENT_COLUMNS: &str = "e.id, e.execution_id, e.kind, e.time, x.action, e.data";

pub(crate) fn event(op: &'static str, row: &Row<'_>) -> Result<Event, StoreError> {
    let text = |i: usize| -> Result<String, StoreError> {
        row.get(i).map_err(|e| crate::error::map(op, e))
    };
    let time: i64 = row.get(3).map_err(|e| crate::error::map(op, e))?;
    Ok(Event {
        id: uuid_at(op, row, 0)?,
        execution_id: ExecutionId::from_uuid(uuid_at(op, row, 1)?),
        kind: text(2)?
            .parse::<EventKind>()
            .map_err(|e| StoreError::corrupt(op, e))?,
        time: from_nanos(time),
        action: Arc::from(text(4)?),
        data: Json::parse(&text(5)?)
            .map_err(|e| StoreError::corrupt(op, format!("event data: {e}")))?,
    })
}
