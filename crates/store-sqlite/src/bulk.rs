//! A bulk append (CLI `ingest FILE`) as a *bulk load*: all or nothing, like one
//! transaction, but committed in steps.
//!
//! One SQLite transaction over a whole large file spills its pages into the WAL as it goes,
//! rewrites the checksum of every frame at its commit, and only then copies everything into
//! the database: about three seconds of disk work after the last line for a 1,000,000-event
//! file, with the processors idle. Committed in steps of [`STEP_BYTES`], the WAL stays
//! small and is checkpointed while the parsers work.
//!
//! All or nothing is kept by a row in `bulk_loads` (at most one): while it is there,
//! - readers see no event above its `after_seq` (the SQL of [`VISIBLE_HEAD`]);
//! - other writers of events wait for it to go (as they would for SQLite's write lock), so
//!   every event above `after_seq` belongs to the load;
//! - when the load fails, it deletes its events; when its process dies, the next process
//!   that opens the store or appends to it does that.
//!
//! The last step deletes the row in the same transaction as its own events: the load
//! becomes visible at once.

use std::path::Path;
use std::time::{Duration, Instant};

use auditsync_store::{holder, BulkItem, BulkOutcome, EncodedEvent, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::mpsc;

use crate::{backend, now_ms, Remembered, BULK_CACHE_KIB, CACHE_KIB, WAL_AUTOCHECKPOINT_PAGES};

/// Bytes of events committed per step: small enough that a step's pages fit the bulk page
/// cache (nothing spills to the WAL before its commit).
const STEP_BYTES: usize = 2 << 20;

/// How long a writer waits for another process's bulk load before giving up, as SQLite's
/// busy timeout does for its lock.
pub(crate) const BULK_WAIT: Duration = Duration::from_secs(10);

/// SQL for the highest sequence number readers may see: below an open bulk load.
pub(crate) const VISIBLE_HEAD: &str =
    "(SELECT COALESCE(MIN(after_seq), 9223372036854775807) FROM bulk_loads)";

/// An open bulk load.
struct Load {
    after_seq: u64,
    holder: String,
}

fn open_load(conn: &Connection) -> rusqlite::Result<Option<Load>> {
    conn.query_row("SELECT after_seq, holder FROM bulk_loads", [], |r| {
        Ok(Load {
            after_seq: r.get(0)?,
            holder: r.get(1)?,
        })
    })
    .optional()
}

/// Deletes an abandoned load's events (every event above its `after_seq`) and the load.
fn undo(tx: &Transaction<'_>, load: &Load) -> rusqlite::Result<usize> {
    let deleted = tx.execute("DELETE FROM events WHERE seq > ?1", [load.after_seq])?;
    tx.execute("DELETE FROM bulk_loads WHERE holder = ?1", [&load.holder])?;
    Ok(deleted)
}

/// Undoes the load in `tx` if its process has exited; returns the load still running, if any.
fn undo_if_exited(tx: &Transaction<'_>) -> rusqlite::Result<Option<Load>> {
    match open_load(tx)? {
        Some(load) if holder::has_exited(&load.holder) => {
            let deleted = undo(tx, &load)?;
            tracing::warn!(holder = %load.holder, events = deleted, "undid the bulk ingest of a process that exited before its end: none of its events is kept");
            Ok(None)
        }
        running => Ok(running),
    }
}

/// Whether the open load is still `me` (another process may have taken it for dead).
fn is_mine(tx: &Transaction<'_>, me: &Load) -> rusqlite::Result<bool> {
    Ok(open_load(tx)?.is_some_and(|load| load.holder == me.holder))
}

/// Undoes the load of a process that has exited, if there is one (at open).
pub(crate) fn undo_exited_load(conn: &mut Connection) -> Result<(), StoreError> {
    let err = backend("undo an abandoned bulk load");
    // A plain look first: most of the time there is no load, and a read-only store still
    // opens.
    match open_load(conn).map_err(&err)? {
        Some(load) if holder::has_exited(&load.holder) => {}
        _ => return Ok(()),
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    undo_if_exited(&tx).map_err(&err)?;
    tx.commit().map_err(&err)
}

/// Runs `work` in a write transaction once no other process's bulk load is open: a running
/// one is waited for (up to [`BULK_WAIT`]), one whose process has exited is undone in the
/// same transaction.
pub(crate) fn write<T>(
    conn: &mut Connection,
    work: impl FnOnce(Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let err = backend("begin a write");
    let started = Instant::now();
    let mut work = Some(work);
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let Some(load) = undo_if_exited(&tx).map_err(&err)? else {
            let work = work
                .take()
                .expect("work runs once: the loop returns after it");
            return work(tx);
        };
        drop(tx);
        if started.elapsed() >= BULK_WAIT {
            return Err(StoreError::Backend {
                operation: "begin a write",
                source: format!(
                    "a bulk ingest by {} has held the store for over {}s; retry when it ends",
                    load.holder,
                    BULK_WAIT.as_secs()
                )
                .into(),
                retryable: true,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Appends every chunk of `items` as one bulk load on `conn`; it becomes visible only on
/// [`BulkItem::Commit`]. Runs on a blocking thread: it waits for the producer's chunks.
pub(crate) fn append_bulk_blocking(
    conn: &mut Connection,
    path: &Path,
    items: mpsc::Receiver<BulkItem>,
) -> Result<BulkOutcome, StoreError> {
    append_bulk_restarting_wal(conn, path, items, RESTART_WAL_AFTER_BYTES)
}

/// [`append_bulk_blocking`] with the WAL started again after every `restart_wal_after`
/// bytes of events (tests make it small).
fn append_bulk_restarting_wal(
    conn: &mut Connection,
    path: &Path,
    items: mpsc::Receiver<BulkItem>,
    restart_wal_after: usize,
) -> Result<BulkOutcome, StoreError> {
    let err = backend("bulk append");
    conn.pragma_update(None, "cache_size", BULK_CACHE_KIB)
        .map_err(&err)?;
    let result = load(conn, path, items, restart_wal_after);
    let restored = conn
        .pragma_update(None, "cache_size", CACHE_KIB)
        .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
        .and_then(|()| conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES))
        .map_err(&err);
    let outcome = result?;
    restored?;
    Ok(outcome)
}

/// How often the background checkpointer of a bulk load copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies the WAL into the database file from a connection of its own while a bulk load
/// writes (a PASSIVE checkpoint waits for no one): the disk work of the load runs beside
/// the parsers and the writer instead of after them, or inside the writer's steps.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Self {
        let path = path.to_path_buf();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bulk-checkpoint".into())
            .spawn(move || {
                let Ok(conn) = Connection::open(&path) else {
                    return;
                };
                // SQLite syncs the database file only after a checkpoint that caught up with
                // the whole WAL, which a running load never lets happen: everything copied
                // would wait, dirty, for one long fsync after the last line (about 1.2 s for
                // 600 MB). Syncing here writes it out while the parsers work.
                let db = std::fs::File::open(&path).ok();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    // A failed checkpoint or sync only leaves more for the next one, or for
                    // the writer's own at the end.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Some(db) = &db {
                        let _ = db.sync_data();
                    }
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn load(
    conn: &mut Connection,
    path: &Path,
    mut items: mpsc::Receiver<BulkItem>,
    restart_wal_after: usize,
) -> Result<BulkOutcome, StoreError> {
    let err = backend("bulk append");
    let holder = holder::this_process();
    let me = write(conn, |tx| {
        // Every sequence number handed out so far, also those of deleted events.
        let after_seq: u64 = tx
            .query_row(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                            COALESCE((SELECT MAX(seq) FROM events), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(&err)?;
        tx.execute(
            "INSERT INTO bulk_loads (after_seq, holder, started_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![after_seq, holder, now_ms()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(Load { after_seq, holder })
    })?;
    // The steps before the last need no fsync of their own: nothing of the load is visible
    // until the last step, whose commit (synchronous=FULL again) syncs the WAL with every
    // frame before it. The checkpoints run beside the load.
    let result = conn
        .pragma_update(None, "synchronous", "NORMAL")
        .and_then(|()| conn.pragma_update(None, "wal_autocheckpoint", 0))
        .map_err(&err)
        .and_then(|()| {
            let checkpointing = Checkpointer::start(path);
            let loaded = load_steps(conn, &me, &mut items, restart_wal_after);
            let stopping = Instant::now();
            drop(checkpointing);
            tracing::debug!(
                checkpointer_stop_s = stopping.elapsed().as_secs_f64(),
                "bulk load checkpointer stopped"
            );
            loaded
        });
    if result.is_err() {
        let undone = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                // Only a load still ours: one another process undid may have been followed
                // by other writes, which are not ours to delete.
                if is_mine(&tx, &me)? {
                    undo(&tx, &me)?;
                }
                tx.commit()
            });
        if let Err(e) = undone {
            // The store stays held until this process exits; the next one undoes it.
            tracing::error!(error = %e, "could not undo a failed bulk ingest");
        }
    }
    result
}

fn load_steps(
    conn: &mut Connection,
    me: &Load,
    items: &mut mpsc::Receiver<BulkItem>,
    restart_wal_after: usize,
) -> Result<BulkOutcome, StoreError> {
    let mut outcome = BulkOutcome::default();
    let mut step = Vec::new();
    let mut step_bytes = 0;
    let mut since_restart = 0;
    loop {
        match items.blocking_recv() {
            Some(BulkItem::Events(rows)) => {
                step_bytes += rows.iter().map(|r| r.body.len()).sum::<usize>();
                step.extend(rows);
                if step_bytes >= STEP_BYTES {
                    write_step(conn, me, std::mem::take(&mut step), &mut outcome, false)?;
                    since_restart += step_bytes;
                    step_bytes = 0;
                    if since_restart >= restart_wal_after && wal_caught_up(conn) {
                        since_restart = 0;
                    }
                }
            }
            Some(BulkItem::Commit) => {
                let committing = Instant::now();
                conn.pragma_update(None, "synchronous", "FULL")
                    .map_err(backend("bulk append"))?;
                write_step(conn, me, step, &mut outcome, true)?;
                tracing::debug!(
                    last_step_s = committing.elapsed().as_secs_f64(),
                    "bulk load committed"
                );
                return Ok(outcome);
            }
            None => return Err(StoreError::Abandoned),
        }
    }
}

/// Event bytes written between two restarts of the WAL from its start.
const RESTART_WAL_AFTER_BYTES: usize = 64 << 20;

/// Copies what the checkpointer has not yet copied of the WAL, on the writer's own
/// connection between two steps; true when all of it is in the database file.
///
/// The writer's next step then starts the WAL again from its beginning, over the pages
/// already on disk. Without this the checkpointer never catches up with a writer that
/// never pauses, and the WAL grows to the size of the whole load: about 650 MB for a
/// 1,000,000-event file, which its deletion at close then spends 0.6 s freeing.
fn wal_caught_up(conn: &Connection) -> bool {
    // (busy, frames in the WAL, frames copied); a checkpoint already running is busy.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(r.get::<_, i64>(0)? == 0 && r.get::<_, i64>(1)? == r.get::<_, i64>(2)?)
    })
    .unwrap_or(false)
}

/// Commits one step of the load; the last one also makes the whole load visible.
fn write_step(
    conn: &mut Connection,
    me: &Load,
    rows: Vec<EncodedEvent>,
    outcome: &mut BulkOutcome,
    last: bool,
) -> Result<(), StoreError> {
    let err = backend("bulk append");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    if !is_mine(&tx, me).map_err(&err)? {
        return Err(StoreError::Backend {
            operation: "bulk append",
            source: "another process undid this bulk ingest (it took this one for dead)".into(),
            retryable: false,
        });
    }
    {
        let mut remembered = Remembered::new(&tx).map_err(&err)?;
        let mut fresh = Vec::with_capacity(rows.len());
        for row in &rows {
            if remembered.seq_of(&row.id).map_err(&err)?.is_some() {
                outcome.duplicates += 1;
            } else {
                fresh.push(row);
            }
        }
        let stored = insert_rows(&tx, &fresh).map_err(&err)?;
        // INSERT OR IGNORE skipped the ids already stored, or repeated in the input.
        outcome.duplicates += fresh.len() as u64 - stored;
        outcome.stored += stored;
    }
    if last {
        if outcome.stored > 0 {
            outcome.seqs = Some(
                tx.query_row(
                    "SELECT MIN(seq), MAX(seq) FROM events WHERE seq > ?1",
                    [me.after_seq],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(&err)?,
            );
        }
        tx.execute("DELETE FROM bulk_loads WHERE holder = ?1", [&me.holder])
            .map_err(&err)?;
    }
    tx.commit().map_err(&err)
}

/// Rows per INSERT statement. A statement per row spends about as much on the statement
/// (binding, VM setup, AUTOINCREMENT's bookkeeping, done once per statement) as on the row.
const ROWS_PER_INSERT: usize = 32;

/// Inserts `rows`, skipping ids already stored; returns how many were inserted.
fn insert_rows(tx: &Transaction<'_>, rows: &[&EncodedEvent]) -> rusqlite::Result<u64> {
    fn insert_sql(rows: usize) -> String {
        let values = vec!["(?,?,?,?)"; rows].join(",");
        format!("INSERT OR IGNORE INTO events (id, time_ms, tenant, body) VALUES {values}")
    }
    let full = insert_sql(ROWS_PER_INSERT);
    let mut inserted = 0;
    for group in rows.chunks(ROWS_PER_INSERT) {
        let sql = if group.len() == ROWS_PER_INSERT {
            std::borrow::Cow::Borrowed(full.as_str())
        } else {
            std::borrow::Cow::Owned(insert_sql(group.len()))
        };
        let mut insert = tx.prepare_cached(&sql)?;
        let params = group.iter().flat_map(|row| {
            [
                &row.id as &dyn rusqlite::ToSql,
                &row.time,
                &row.tenant,
                &row.body,
            ]
        });
        inserted += insert.execute(rusqlite::params_from_iter(params))? as u64;
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use auditsync_store::testkit::event;

    /// The WAL's size after a bulk load of `events` 1 KiB events, restarting it after
    /// `restart_wal_after` bytes.
    fn wal_bytes_after_a_load(events: usize, restart_wal_after: usize) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        drop(SqliteStore::open(&path).unwrap());
        let mut conn = Connection::open(&path).unwrap();
        SqliteStore::configure(&conn).unwrap();
        let (tx, rx) = mpsc::channel(4);
        let loading = {
            let path = path.clone();
            std::thread::spawn(move || {
                let outcome = append_bulk_restarting_wal(&mut conn, &path, rx, restart_wal_after);
                // The WAL as the load leaves it, before closing the connection deletes it.
                let wal = std::fs::metadata(path.with_extension("db-wal"))
                    .unwrap()
                    .len();
                (outcome, wal)
            })
        };
        for start in (0..events).step_by(500) {
            let rows = (start..start + 500)
                .map(|i| {
                    let mut e = event(&format!("e{i}"), i as i64);
                    e.payload = Some("x".repeat(1000).into());
                    EncodedEvent::new(&e).unwrap()
                })
                .collect();
            tx.blocking_send(BulkItem::Events(rows)).unwrap();
        }
        tx.blocking_send(BulkItem::Commit).unwrap();
        let (outcome, wal) = loading.join().unwrap();
        assert_eq!(outcome.unwrap().stored, events as u64);
        wal
    }

    #[test]
    fn the_wal_starts_again_during_a_load_instead_of_growing_with_it() {
        let load = 24_000; // about 25 MB of events
        let unbounded = wal_bytes_after_a_load(load, usize::MAX);
        let restarted = wal_bytes_after_a_load(load, 2 << 20);
        assert!(unbounded > 24 << 20, "without restarts: {unbounded} bytes");
        assert!(
            restarted < unbounded / 2,
            "restarted every 2 MiB: {restarted} bytes, against {unbounded}"
        );
    }
}
