//! Hearing other instances' changes: a connection that `LISTEN`s on the
//! schema's channel and announces what arrives on the store's watch
//! channel. After the connection drops (server restart, failover,
//! network) it reconnects and announces [`Change::elsewhere`], so waiters
//! re-read whatever they wait for instead of missing a decision made while
//! nobody was listening.

use std::sync::Weak;
use std::time::Duration;

use governor_core::{Change, ExecutionId, ExecutionStatus};
use tokio::sync::{broadcast, mpsc};

use crate::conn::Endpoint;

/// The notification channel of a schema.
pub(crate) fn channel(schema: &str) -> String {
    format!("governor_{schema}")
}

/// Starts the listener; it stops once `alive` is gone.
pub(crate) fn spawn(
    endpoint: Endpoint,
    schema: String,
    instance: String,
    changes: broadcast::Sender<Change>,
    alive: Weak<()>,
) {
    tokio::spawn(async move {
        let mut first = true;
        while alive.upgrade().is_some() {
            match listen(&endpoint, &schema, &instance, &changes, &alive, first).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres listener disconnected; reconnecting")
                }
            }
            first = false;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Listens until the store is dropped (`Ok`) or the connection fails.
async fn listen(
    endpoint: &Endpoint,
    schema: &str,
    instance: &str,
    changes: &broadcast::Sender<Change>,
    alive: &Weak<()>,
    first: bool,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (client, driver) = endpoint
        .connect("governor-listener", Some(tx))
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        client
            .batch_execute(&format!("LISTEN {}", channel(schema)))
            .await
            .map_err(|e| e.to_string())?;
        if !first {
            let _ = changes.send(Change::elsewhere());
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                payload = rx.recv() => match payload {
                    Some(p) => announce(&p, instance, changes),
                    None => return Err("the connection ended".to_owned()),
                },
                _ = tick.tick() => if alive.upgrade().is_none() {
                    return Ok(());
                },
            }
        }
    }
    .await;
    driver.abort();
    result
}

/// Announces each `id=status` of a payload sent by another instance.
fn announce(payload: &str, instance: &str, changes: &broadcast::Sender<Change>) {
    let mut parts = payload.split(' ');
    if parts.next() == Some(instance) || changes.receiver_count() == 0 {
        return;
    }
    for part in parts {
        let parsed = part.split_once('=').and_then(|(id, status)| {
            Some(Change {
                id: ExecutionId::from_uuid(uuid::Uuid::parse_str(id).ok()?),
                status: status.parse::<ExecutionStatus>().ok()?,
            })
        });
        let _ = changes.send(parsed.unwrap_or_else(Change::elsewhere));
    }
}
