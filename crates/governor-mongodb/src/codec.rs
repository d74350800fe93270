//! Converting between BSON documents and governor's types.
//!
//! Ids are stored as their hyphenated text (which sorts like the ids do),
//! times as nanoseconds since the epoch in `Int64` (exact, the same values
//! the other stores keep), and payloads as the JSON text they were
//! written as: byte for byte what the audit chain hashed, and safe for
//! any key or number a caller sends (BSON refuses some keys, such as ones
//! starting with `$`, and integers past `i64`).

use std::sync::Arc;

use governor_core::{
    ApprovalRequest, EventKind, EventRecord, Execution, ExecutionId, ExecutionStatus, Failure,
    Json, Lease, Principal, StoreError,
};
use mongodb::bson::{Bson, Document, doc};
use uuid::Uuid;

pub(crate) use governor_core::store::{decode_json, encode_json, from_nanos, to_nanos};

/// The stored form of an id.
pub(crate) fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// Reads fields of one stored document, naming the field in errors.
pub(crate) struct Fields<'d> {
    op: &'static str,
    doc: &'d Document,
}

impl<'d> Fields<'d> {
    pub(crate) fn new(op: &'static str, doc: &'d Document) -> Self {
        Self { op, doc }
    }

    pub(crate) fn text(&self, key: &str) -> Result<&'d str, StoreError> {
        self.opt_text(key)?
            .ok_or_else(|| StoreError::corrupt(self.op, format!("field `{key}` is missing")))
    }

    pub(crate) fn opt_text(&self, key: &str) -> Result<Option<&'d str>, StoreError> {
        match self.doc.get(key) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, other)),
        }
    }

    pub(crate) fn int(&self, key: &str) -> Result<i64, StoreError> {
        self.opt_int(key)?
            .ok_or_else(|| StoreError::corrupt(self.op, format!("field `{key}` is missing")))
    }

    pub(crate) fn opt_int(&self, key: &str) -> Result<Option<i64>, StoreError> {
        match self.doc.get(key) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::Int64(n)) => Ok(Some(*n)),
            Some(Bson::Int32(n)) => Ok(Some(i64::from(*n))),
            Some(other) => Err(self.wrong(key, other)),
        }
    }

    pub(crate) fn uuid(&self, key: &str) -> Result<Uuid, StoreError> {
        Uuid::parse_str(self.text(key)?)
            .map_err(|e| StoreError::corrupt(self.op, format!("field `{key}` is not an id: {e}")))
    }

    pub(crate) fn json(&self, key: &str) -> Result<Json, StoreError> {
        Json::parse(self.text(key)?)
            .map_err(|e| StoreError::corrupt(self.op, format!("field `{key}`: {e}")))
    }

    pub(crate) fn opt_json(&self, key: &str) -> Result<Option<Json>, StoreError> {
        self.opt_text(key)?
            .map(Json::parse)
            .transpose()
            .map_err(|e| StoreError::corrupt(self.op, format!("field `{key}`: {e}")))
    }

    pub(crate) fn status(&self) -> Result<ExecutionStatus, StoreError> {
        self.text("status")?
            .parse()
            .map_err(|e| StoreError::corrupt(self.op, e))
    }

    pub(crate) fn lease(&self) -> Result<Option<Lease>, StoreError> {
        Ok(
            match (self.opt_text("lease_owner")?, self.opt_int("lease_until")?) {
                (Some(owner), Some(until)) => Some(Lease {
                    owner: owner.to_owned(),
                    until: from_nanos(until),
                }),
                _ => None,
            },
        )
    }

    fn wrong(&self, key: &str, value: &Bson) -> StoreError {
        StoreError::corrupt(
            self.op,
            format!("field `{key}` has BSON type {:?}", value.element_type()),
        )
    }
}

fn opt<T: Into<Bson>>(v: Option<T>) -> Bson {
    v.map_or(Bson::Null, Into::into)
}

/// An execution as a document.
pub(crate) fn execution_doc(op: &'static str, e: &Execution) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": id_text(e.id.as_uuid()),
        "action": &*e.action,
        "status": e.status.as_str(),
        "principal_id": &e.principal.id,
        "tenant": opt(e.principal.tenant.clone()),
        "principal": encode_json(op, &*e.principal)?,
        "inputs": e.inputs.as_str(),
        "output": opt(e.output.as_ref().map(|o| o.as_str().to_owned())),
        "failure": opt(e.failure.as_ref().map(|f| encode_json(op, f)).transpose()?),
        "approval": opt(e.approval.as_ref().map(|a| encode_json(op, a)).transpose()?),
        "lease_owner": opt(e.lease.as_ref().map(|l| l.owner.clone())),
        "lease_until": opt(e.lease.as_ref().map(|l| to_nanos(l.until))),
        "created_at": to_nanos(e.created_at),
        "updated_at": to_nanos(e.updated_at),
        "finished_at": opt(e.finished_at.map(to_nanos)),
        "version": i64::try_from(e.version).unwrap_or(i64::MAX),
    })
}

/// A stored execution.
pub(crate) fn execution(op: &'static str, doc: &Document) -> Result<Execution, StoreError> {
    let f = Fields::new(op, doc);
    let principal: Principal = decode_json(op, "principal", f.text("principal")?)?;
    let failure: Option<Failure> = f
        .opt_text("failure")?
        .map(|t| decode_json(op, "failure", t))
        .transpose()?;
    let approval: Option<ApprovalRequest> = f
        .opt_text("approval")?
        .map(|t| decode_json(op, "approval", t))
        .transpose()?;
    Ok(Execution {
        id: ExecutionId::from_uuid(f.uuid("_id")?),
        action: Arc::from(f.text("action")?),
        status: f.status()?,
        principal: Arc::new(principal),
        inputs: f.json("inputs")?,
        output: f.opt_json("output")?,
        failure,
        approval,
        lease: f.lease()?,
        created_at: from_nanos(f.int("created_at")?),
        updated_at: from_nanos(f.int("updated_at")?),
        finished_at: f.opt_int("finished_at")?.map(from_nanos),
        version: u64::try_from(f.int("version")?).unwrap_or(0),
    })
}

/// An event of execution `id` as a document (its action is the
/// execution's).
pub(crate) fn event_doc(id: ExecutionId, e: &EventRecord) -> Document {
    doc! {
        "_id": id_text(e.id),
        "execution_id": id_text(id.as_uuid()),
        "kind": e.kind.as_str(),
        "time": to_nanos(e.time),
        "data": e.data.as_str(),
    }
}

/// A stored event and its execution.
pub(crate) fn event(
    op: &'static str,
    doc: &Document,
) -> Result<(ExecutionId, EventRecord), StoreError> {
    let f = Fields::new(op, doc);
    let record = EventRecord {
        id: f.uuid("_id")?,
        kind: f
            .text("kind")?
            .parse::<EventKind>()
            .map_err(|e| StoreError::corrupt(op, e))?,
        time: from_nanos(f.int("time")?),
        data: f.json("data")?,
    };
    Ok((ExecutionId::from_uuid(f.uuid("execution_id")?), record))
}
