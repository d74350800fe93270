//! WAL checkpoints, kept off the path of waiting writes. SQLite's
//! automatic checkpoint runs inside the commit that crossed its threshold,
//! before that batch's callers hear back, and on the thread every write
//! waits for (4% of its time under load, perf). Here the commit only
//! records that a checkpoint is due; once the batch's callers have their
//! replies, the writer runs it itself when no write is waiting, or hands
//! it to a thread of its own when writes are queued (WAL mode lets a
//! checkpoint run beside a writer).
//!
//! Why not always on the thread: on one disk, its write-out makes every
//! commit's fsync slower (a device flush covers both), so a lone caller
//! was 30% slower; the writer's idle moments cost no one anything.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;

use crate::error::{map, no_thread};
use governor_core::StoreError;

/// WAL pages after which a checkpoint is due: SQLite's own default.
const THRESHOLD_PAGES: i32 = 1000;

/// WAL pages after which the commit checkpoints at once, as SQLite would:
/// the checkpoints cannot keep up (or a reader pins the WAL), and the WAL
/// must stay bounded.
const BEHIND_PAGES: i32 = 16 * THRESHOLD_PAGES;

/// The writer's side: whether a checkpoint is due, and the thread to hand
/// it to.
pub(crate) struct Checkpoints {
    due: Arc<AtomicBool>,
    ask: SyncSender<()>,
}

impl Checkpoints {
    /// Runs or hands over a due checkpoint; `queued` says whether writes
    /// are waiting for the writer.
    pub(crate) fn after_commit(&self, writer: &Connection, queued: bool) {
        if !self.due.swap(false, Ordering::Relaxed) {
            return;
        }
        // One pending request is enough: a checkpoint copies everything
        // committed before it starts. A gone thread means inline.
        if !queued || matches!(self.ask.try_send(()), Err(TrySendError::Disconnected(()))) {
            passive(writer);
        }
    }
}

fn passive(conn: &Connection) {
    // A busy checkpoint (another process's) is simply tried again later.
    if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
        tracing::debug!("checkpoint skipped: {e}");
    }
}

/// Replaces `writer`'s automatic checkpoint (the same hook slot) and
/// starts the checkpoint thread, with its own connection to `path`
/// (synchronous as `synchronous`).
pub(crate) fn offload(
    writer: &mut Connection,
    path: PathBuf,
    synchronous: &'static str,
    busy_timeout: std::time::Duration,
) -> Result<Checkpoints, StoreError> {
    let (ask, asked) = sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("governor-sqlite-checkpoint".into())
        .spawn(move || run(&path, synchronous, busy_timeout, &asked))
        .map_err(no_thread)?;
    install(writer, ask)
}

/// Installs the hook that marks checkpoints due.
fn install(writer: &mut Connection, ask: SyncSender<()>) -> Result<Checkpoints, StoreError> {
    let due = Arc::new(AtomicBool::new(false));
    let marked = Arc::clone(&due);
    writer
        .wal_hook(Some(move |wal: &mut Wal, pages: i32| {
            if pages >= BEHIND_PAGES {
                // An error here would be reported as the commit's, which
                // has happened: a busy checkpoint is tried at the next one.
                let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
            } else if pages >= THRESHOLD_PAGES {
                marked.store(true, Ordering::Relaxed);
            }
            Ok(())
        }))
        .map_err(|e| map("open", e))?;
    Ok(Checkpoints { due, ask })
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
            // The writer sees the channel closed and checkpoints itself.
            tracing::warn!("checkpoints stay on the writer thread: {e}");
            return;
        }
    };
    while asked.recv().is_ok() {
        passive(&conn);
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

    /// Commits `pages` rows of most of a page each (a commit writes at
    /// least two WAL pages: the leaf and its parent), telling
    /// `checkpoints` after each whether writes are `queued`.
    fn write_pages(conn: &Connection, checkpoints: &Checkpoints, pages: usize, queued: bool) {
        for _ in 0..pages {
            conn.execute("INSERT INTO t VALUES (zeroblob(3500))", [])
                .unwrap();
            checkpoints.after_commit(conn, queued);
        }
    }

    fn db_bytes(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Far past the threshold, far below the point where the commit would
    /// checkpoint at once.
    const PAGES: usize = 1_200;
    const COPIED: u64 = 3_000_000;

    #[test]
    fn with_writes_queued_the_thread_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = wal_db(dir.path());
        let checkpoints = offload(&mut conn, path.clone(), "FULL", Duration::from_secs(5)).unwrap();
        let before = db_bytes(&path);
        write_pages(&conn, &checkpoints, PAGES, true);
        let deadline = Instant::now() + Duration::from_secs(20);
        while db_bytes(&path) < before + COPIED {
            assert!(
                Instant::now() < deadline,
                "no checkpoint copied the WAL back"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_idle_writer_checkpoints_itself_and_hands_nothing_over() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = wal_db(dir.path());
        let (ask, asked) = sync_channel(1);
        let checkpoints = install(&mut conn, ask).unwrap();
        let before = db_bytes(&path);
        write_pages(&conn, &checkpoints, PAGES, false);
        assert!(
            db_bytes(&path) > before + COPIED,
            "the WAL was never copied back"
        );
        assert!(asked.try_recv().is_err(), "a checkpoint was handed over");
    }

    #[test]
    fn a_gone_thread_leaves_the_checkpoint_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = wal_db(dir.path());
        let (ask, asked) = sync_channel(1);
        drop(asked);
        let checkpoints = install(&mut conn, ask).unwrap();
        let before = db_bytes(&path);
        write_pages(&conn, &checkpoints, PAGES, true);
        assert!(
            db_bytes(&path) > before + COPIED,
            "the WAL was never copied back"
        );
    }

    #[test]
    fn below_the_threshold_nothing_is_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = wal_db(dir.path());
        let (ask, asked) = sync_channel(1);
        let checkpoints = install(&mut conn, ask).unwrap();
        let before = db_bytes(&path);
        write_pages(&conn, &checkpoints, 200, false);
        assert_eq!(db_bytes(&path), before);
        assert!(asked.try_recv().is_err());
    }
}
