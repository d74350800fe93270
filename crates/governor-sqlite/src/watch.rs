//! Changes made by other processes on the same file. SQLite tells no one
//! when another connection commits, but `PRAGMA data_version` on a
//! connection changes when anyone else did. While somebody watches, a
//! thread polls it every [`POLL`] and announces [`Change::elsewhere`] when
//! it moved and this store's own writer committed nothing meanwhile (its
//! own commits are announced with their ids already), or, under a steady
//! stream of own commits, at most every 10 ms. A waiter for a
//! decision made in another process so wakes within milliseconds instead
//! of at its next re-read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use governor_core::Change;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::broadcast;

/// How often the file is checked while somebody watches.
pub(crate) const POLL: Duration = Duration::from_millis(2);

/// How often it is checked while nobody does.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// Starts the watcher; it ends once `alive` can no longer be upgraded (the
/// store is gone).
pub(crate) fn spawn(
    path: std::path::PathBuf,
    changes: broadcast::Sender<Change>,
    own_commits: Arc<AtomicU64>,
    alive: Weak<()>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("governor-sqlite-watch".into())
        .spawn(move || {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let Ok(conn) = Connection::open_with_flags(&path, flags) else {
                tracing::warn!(
                    "cannot watch {} for changes by other processes",
                    path.display()
                );
                return;
            };
            // The reading is kept while nobody watches too (less often),
            // so a change made just before somebody starts watching is
            // still noticed.
            let mut last: Option<(i64, u64)> = None;
            let mut last_announced = Instant::now();
            while alive.upgrade().is_some() {
                let watching = changes.receiver_count() > 0;
                let commits = own_commits.load(Ordering::Acquire);
                let Ok(version) = conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
                else {
                    std::thread::sleep(IDLE_POLL);
                    continue;
                };
                // Own commits moved it too, unless none happened; under a
                // steady load of own commits, announce at most every
                // IDLE_POLL so waiters re-read at that pace.
                if let Some((v, c)) = last
                    && watching
                    && v != version
                    && (c == commits || last_announced.elapsed() >= IDLE_POLL)
                {
                    let _ = changes.send(Change::elsewhere());
                    last_announced = Instant::now();
                }
                last = Some((version, commits));
                std::thread::sleep(if watching { POLL } else { IDLE_POLL });
            }
        })
        .map(|_| ())
}
