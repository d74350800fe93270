//! The outbox collection: notifications inserted in the transaction of
//! the change that causes them, claimed with leases by delivery workers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use governor_core::store::lease_until;
use governor_core::{
    DeliveryState, Lease, Notification, NotificationQuery, StoreError, StoreErrorKind,
};
use mongodb::bson::{Bson, Document, doc};
use uuid::Uuid;

use crate::MongoStore;
use crate::codec::{Fields, encode_json, from_nanos, id_text, to_nanos};
use crate::error::map;

/// `n` as its document stores it: the lease lives in its own fields.
pub(crate) fn doc_of(op: &'static str, n: &Notification) -> Result<Document, StoreError> {
    let stored = Notification {
        lease: None,
        ..n.clone()
    };
    Ok(doc! {
        "_id": id_text(n.id),
        "execution_id": id_text(n.execution_id.as_uuid()),
        "state": n.state.as_str(),
        "due": to_nanos(n.next_attempt_at),
        "lease_owner": Bson::Null,
        "lease_until": Bson::Null,
        "notification": encode_json(op, &stored)?,
    })
}

fn decode(op: &'static str, d: &Document) -> Result<Notification, StoreError> {
    let f = Fields::new(op, d);
    let mut n: Notification = serde_json::from_str(f.text("notification")?)
        .map_err(|e| StoreError::corrupt(op, format!("notification: {e}")))?;
    n.lease = match (f.opt_text("lease_owner")?, f.opt_int("lease_until")?) {
        (Some(owner), Some(until)) => Some(Lease {
            owner: owner.to_owned(),
            until: from_nanos(until),
        }),
        _ => None,
    };
    Ok(n)
}

/// The fields an attempt changes.
fn finished(op: &'static str, n: &Notification) -> Result<Document, StoreError> {
    let stored = Notification {
        lease: None,
        ..n.clone()
    };
    Ok(doc! { "$set": {
        "state": n.state.as_str(),
        "due": to_nanos(n.next_attempt_at),
        "notification": encode_json(op, &stored)?,
        "lease_owner": Bson::Null,
        "lease_until": Bson::Null,
    }})
}

impl MongoStore {
    pub(crate) async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        const OP: &str = "claim_notifications";
        let limit = limit.min(10_000);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_n = to_nanos(now);
        let free = doc! {
            "state": "pending",
            "due": { "$lte": now_n },
            "$or": [ { "lease_until": Bson::Null }, { "lease_until": { "$lte": now_n } } ],
        };
        let candidates = self
            .find(OP, "outbox", free.clone(), doc! { "_id": 1 }, limit)
            .await?;
        let ids: Vec<Bson> = candidates
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Marked with a token, then read back by it: of several workers
        // claiming at once, each gets only what its own update changed.
        let token = Uuid::now_v7().simple().to_string();
        let mut filter = free;
        filter.insert("_id", doc! { "$in": &ids });
        self.collection("outbox")
            .update_many(
                filter,
                doc! { "$set": {
                    "lease_owner": owner,
                    "lease_until": to_nanos(lease_until(now, lease)),
                    "claim": &token,
                }},
            )
            .await
            .map_err(|e| map(OP, e))?;
        let won = self
            .find(
                OP,
                "outbox",
                doc! { "_id": { "$in": ids }, "claim": token },
                doc! { "_id": 1 },
                limit,
            )
            .await?;
        won.iter().map(|d| decode(OP, d)).collect()
    }

    pub(crate) async fn finish_outbox(
        &self,
        next: &Notification,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "finish_notification";
        let done = self
            .collection("outbox")
            .update_one(
                doc! {
                    "_id": id_text(next.id),
                    "lease_owner": owner,
                    "lease_until": { "$gt": to_nanos(now) },
                },
                finished(OP, next)?,
            )
            .await
            .map_err(|e| map(OP, e))?;
        Ok(done.matched_count > 0)
    }

    pub(crate) async fn list_outbox(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        const OP: &str = "notifications";
        let mut filter = Document::new();
        if let Some(id) = query.execution_id {
            filter.insert("execution_id", id_text(id.as_uuid()));
        }
        if let Some(state) = query.state {
            filter.insert("state", state.as_str());
        }
        if let Some(after) = query.after {
            filter.insert("_id", doc! { "$gt": id_text(after) });
        }
        let docs = self
            .find(
                OP,
                "outbox",
                filter,
                doc! { "_id": 1 },
                query.effective_limit(),
            )
            .await?;
        docs.iter().map(|d| decode(OP, d)).collect()
    }

    pub(crate) async fn retry_outbox(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        const OP: &str = "retry_notification";
        let dead = doc! { "_id": id_text(id), "state": DeliveryState::Dead.as_str() };
        let found = self
            .collection("outbox")
            .find_one(dead.clone())
            .await
            .map_err(|e| map(OP, e))?;
        let Some(found) = found else {
            return Ok(None);
        };
        let next = decode(OP, &found)?.revived(now);
        let done = self
            .collection("outbox")
            .update_one(dead, finished(OP, &next)?)
            .await
            .map_err(|e| map(OP, e))?;
        if done.matched_count == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                OP,
                format!("notification {id} changed while it was retried"),
            ));
        }
        Ok(Some(next))
    }
}
