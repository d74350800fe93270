//! WAL checkpoints off the writer thread. SQLite's automatic checkpoint
//! runs inside the commit that crossed its threshold, on the one thread
//! every write waits for (4% of that thread's time under load, perf). Here
//! the writer's commit only signals, and a thread of its own copies the
//! WAL back into the database file while the writer goes on with the next
//! batch: WAL mode lets a checkpoint run beside a writer.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;

use crate::error::map;
use governor_core::StoreError;

/// WAL pages after which a checkpoint is asked for: SQLite's own default.
const THRESHOLD_PAGES: i32 = 1000;

/// WAL pages after which the writer checkpoints itself, as SQLite would:
/// the checkpoint thread is gone or cannot keep up, and the WAL must stay
/// bounded.
const BEHIND_PAGES: i32 = 16 * THRESHOLD_PAGES;

/// Hands `writer`'s checkpoints to a new thread with its own connection
/// to `path` (synchronous as `synchronous`).
pub(crate) fn offload(
    writer: &mut Connection,
    path: PathBuf,
    synchronous: &'static str,
    busy_timeout: std::time::Duration,
) -> Result<(), StoreError> {
    // One pending request is enough: a checkpoint copies everything
    // committed before it starts.
    let (ask, asked) = sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("governor-sqlite-checkpoint".into())
        .spawn(move || run(&path, synchronous, busy_timeout, &asked))
        .map_err(|e| {
            StoreError::new(
                governor_core::StoreErrorKind::Unavailable,
                "open",
                e.to_string(),
            )
        })?;
    install(writer, ask)
}

/// Replaces SQLite's automatic checkpoint (the same hook slot) with
/// requests sent to `ask`.
fn install(writer: &mut Connection, ask: SyncSender<()>) -> Result<(), StoreError> {
    writer
        .wal_hook(Some(move |wal: &mut Wal, pages: i32| {
            request(&ask, wal, pages);
            Ok(())
        }))
        .map_err(|e| map("open", e))
}

/// Called after each commit with the WAL's size in pages.
fn request(ask: &SyncSender<()>, wal: &mut Wal, pages: i32) {
    if pages < THRESHOLD_PAGES {
        return;
    }
    let gone = matches!(ask.try_send(()), Err(TrySendError::Disconnected(())));
    if gone || pages >= BEHIND_PAGES {
        // An error here would be reported as the commit's, which has
        // happened: a busy checkpoint is simply tried at the next commit.
        let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
    }
}

/// The checkpoint thread: one passive checkpoint per request, until the
/// writer (and with it the hook holding the sender) is gone.
fn run(
    path: &std::path::Path,
    synchronous: &str,
    busy_timeout: std::time::Duration,
    asked: &Receiver<()>,
) {
    let conn = match open(path, synchronous, busy_timeout) {
        Ok(conn) => conn,
        Err(e) => {
            // The hook sees the channel closed and checkpoints inline.
            tracing::warn!("checkpoints stay on the writer thread: {e}");
            return;
        }
    };
    while asked.recv().is_ok() {
        if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            tracing::debug!("checkpoint of {} skipped: {e}", path.display());
        }
    }
}

fn open(
    path: &std::path::Path,
    synchronous: &str,
    busy_timeout: std::time::Duration,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    // The checkpoint's fsyncs follow the store's durability.
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wal_db(dir: &std::path::Path) -> (PathBuf, Connection) {
        let path = dir.join("db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        (path, conn)
    }

    /// Commits `pages` pages' worth of rows, one page per commit.
    fn write_pages(conn: &Connection, pages: usize) {
        for _ in 0..pages {
            conn.execute("INSERT INTO t VALUES (zeroblob(3500))", [])
                .unwrap();
        }
    }

    fn db_bytes(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn the_checkpoint_thread_copies_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = wal_db(dir.path());
        offload(&mut conn, path.clone(), "FULL", Duration::from_secs(5)).unwrap();
        let before = db_bytes(&path);
        // Past the threshold, far below the point where the writer would
        // checkpoint itself: only the thread can grow the file.
        write_pages(&conn, 1_200);
        let deadline = Instant::now() + Duration::from_secs(20);
        while db_bytes(&path) < before + 3_000_000 {
            assert!(
                Instant::now() < deadline,
                "no checkpoint copied the WAL back"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn without_the_thread_the_writer_checkpoints_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = wal_db(dir.path());
        let (ask, asked) = sync_channel(1);
        drop(asked);
        install(&mut conn, ask).unwrap();
        let before = db_bytes(&path);
        write_pages(&conn, 1_200);
        assert!(
            db_bytes(&path) > before + 3_000_000,
            "the WAL was never copied back"
        );
    }
}
