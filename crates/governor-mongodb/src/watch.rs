//! Announcing other instances' changes: a change stream on the
//! executions collection, reopened (from its resume token) when it breaks.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use governor_core::{Change, ExecutionId, ExecutionStatus};
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use tokio::sync::broadcast;

/// How long a quiet stream waits before checking the store still exists.
const TICK: Duration = Duration::from_secs(1);
/// The pause before reopening a broken stream.
const RETRY: Duration = Duration::from_millis(250);

/// Starts the listener; it stops once `alive` is gone.
pub(crate) fn spawn(
    executions: Collection<Document>,
    changes: broadcast::Sender<Change>,
    alive: Weak<()>,
) {
    tokio::spawn(async move {
        let mut token = None;
        let mut broken = false;
        while alive.strong_count() > 0 {
            let opened = executions
                .watch()
                .pipeline([doc! {
                    "$match": { "operationType": { "$in": ["insert", "update", "replace"] } }
                }])
                .resume_after(token.clone())
                .await;
            let mut stream = match opened {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "mongodb change stream did not open; retrying");
                    // A stale token (the oplog moved on) would fail forever.
                    token = None;
                    broken = true;
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            if broken {
                // Changes may have been missed while the stream was down:
                // waiters re-read.
                let _ = changes.send(Change::elsewhere());
                broken = false;
            }
            while alive.strong_count() > 0 {
                match tokio::time::timeout(TICK, stream.next()).await {
                    Err(_) => continue,
                    Ok(Some(Ok(event))) => {
                        token = Some(event.id.clone());
                        if changes.receiver_count() > 0
                            && let Some(change) = change_of(&event)
                        {
                            let _ = changes.send(change);
                        }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::debug!(error = %e, "mongodb change stream broke; reopening");
                        broken = true;
                        break;
                    }
                    Ok(None) => {
                        broken = true;
                        break;
                    }
                }
            }
            // `stream.resume_token()` would panic after a poll the tick
            // cut short; the last event's own token is the same one.
            if broken {
                tokio::time::sleep(RETRY).await;
            }
        }
    });
}

/// The status change an event records: `elsewhere` when it cannot tell
/// (a transition that kept the status, such as one approval stage's
/// decision), nothing for changes that are not transitions (leases).
fn change_of(event: &ChangeStreamEvent<Document>) -> Option<Change> {
    let status = match event.operation_type {
        OperationType::Insert | OperationType::Replace => event
            .full_document
            .as_ref()
            .and_then(|d| d.get_str("status").ok()),
        OperationType::Update => {
            let fields = &event.update_description.as_ref()?.updated_fields;
            if !fields.contains_key("version") {
                return None;
            }
            fields.get_str("status").ok()
        }
        _ => None,
    };
    let id = event
        .document_key
        .as_ref()
        .and_then(|k| k.get_str("_id").ok())
        .and_then(|s| uuid::Uuid::parse_str(s).ok());
    match (id, status.map(str::parse::<ExecutionStatus>)) {
        (Some(id), Some(Ok(status))) => Some(Change {
            id: ExecutionId::from_uuid(id),
            status,
        }),
        _ => Some(Change::elsewhere()),
    }
}
