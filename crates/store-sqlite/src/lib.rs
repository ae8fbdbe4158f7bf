//! The embedded store of auditsync: one SQLite file (`store.type` `sqlite`).
//!
//! Linking this crate (calling [`link`]) registers it in `auditsync_store::registry`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auditsync_core::registry::{parse_options, Options};
use auditsync_core::ConfigError;
use auditsync_store::{
    Appended, Batch, BulkItem, BulkOutcome, EncodedEvent, ScheduleRun, Store, StoreError,
    StoreFactory, StoreStats, StoredEvent,
};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use tokio::sync::mpsc;

/// Keeps this crate linked into a binary that finds it only through the registry.
pub fn link() {}

/// Options of a `{"type": "sqlite"}` store.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file, created with its directory if missing.
    pub path: PathBuf,
}

fn build(options: &Options) -> Result<Arc<dyn Store>, ConfigError> {
    let config: SqliteConfig = parse_options(options)?;
    let store = SqliteStore::open(&config.path)
        .map_err(|e| ConfigError::invalid("path", format!("{}: {e}", config.path.display())))?;
    Ok(Arc::new(store))
}

auditsync_core::inventory::submit! {
    StoreFactory {
        name: "sqlite",
        summary: "one SQLite file in WAL mode, fsynced on every commit (embedded default)",
        build,
    }
}

/// The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a commit is
/// on disk before [`Store::append`] returns.
///
/// Sequence numbers come from an `AUTOINCREMENT` key, so they are never reused, even after
/// garbage collection has emptied the table.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT    NOT NULL UNIQUE,
    time_ms INTEGER NOT NULL,
    tenant  TEXT,
    body    TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    destination TEXT    PRIMARY KEY,
    seq         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    destination  TEXT    NOT NULL,
    first_seq    INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    object_key   TEXT    NOT NULL,
    events       INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    completed_ms INTEGER,
    PRIMARY KEY (destination, first_seq)
);
CREATE TABLE IF NOT EXISTS schedule_runs (
    schedule    TEXT    PRIMARY KEY,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    ok          INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO store_meta (key, value) VALUES ('schema_version', '1');
"#;

/// The page cache (negative: KiB): 64 MiB keeps the id index's hot pages in memory.
const CACHE_KIB: i64 = -65_536;
/// The page cache during a bulk append.
const BULK_CACHE_KIB: i64 = -16_384;

fn backend(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |err| {
        let retryable = matches!(
            err.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        StoreError::Backend {
            operation,
            source: Box::new(err),
            retryable,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, and its parent directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Backend {
                operation: "open",
                source: format!("cannot create directory {}: {e}", parent.display()).into(),
                retryable: false,
            })?;
        }
        let conn = Connection::open(&path).map_err(backend("open"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(backend("open"))?;
        // Larger pages: fewer B-tree splits and WAL frames per event (takes effect when the
        // file is created).
        conn.pragma_update(None, "page_size", 16_384)
            .map_err(backend("open"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend("open"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend("open"))?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)
            .map_err(backend("open"))?;
        // Checkpoint the WAL every 4k pages (64 MiB) instead of every 1k: fewer, larger
        // copies into the database file under a steady ingest.
        conn.pragma_update(None, "wal_autocheckpoint", 4_096)
            .map_err(backend("open"))?;
        conn.execute_batch(SCHEMA).map_err(backend("open"))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking SQLite work off the async runtime's worker threads.
    async fn with_conn<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves SQLite consistent (transactions roll
            // back on drop), so a poisoned lock is still usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend {
            operation: "task",
            source: Box::new(e),
            retryable: false,
        })?
    }
}

fn read_batch(row: &rusqlite::Row<'_>) -> rusqlite::Result<Batch> {
    Ok(Batch {
        destination: row.get(0)?,
        first_seq: row.get(1)?,
        last_seq: row.get(2)?,
        key: row.get(3)?,
        events: row.get(4)?,
        bytes: row.get(5)?,
        sha256: row.get(6)?,
        created_ms: row.get(7)?,
    })
}

const BATCH_COLUMNS: &str =
    "destination, first_seq, last_seq, object_key, events, bytes, sha256, created_ms";

fn cursor_of(conn: &Connection, destination: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT seq FROM cursors WHERE destination = ?1",
        [destination],
        |r| r.get(0),
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// Appends every chunk of `items` in one transaction on `conn`; commits only on
/// [`BulkItem::Commit`]. Runs on a blocking thread: it waits for the producer's chunks.
fn append_bulk_blocking(
    conn: &mut Connection,
    items: mpsc::Receiver<BulkItem>,
) -> Result<BulkOutcome, StoreError> {
    let err = backend("bulk append");
    // A long transaction keeps its dirty pages in the cache until they spill to the WAL:
    // a smaller cache bounds the memory of a large input at no cost (every page is written
    // once either way).
    conn.pragma_update(None, "cache_size", BULK_CACHE_KIB)
        .map_err(&err)?;
    let result = append_bulk_in_transaction(conn, items);
    let restored = conn
        .pragma_update(None, "cache_size", CACHE_KIB)
        .map_err(&err);
    let outcome = result?;
    restored?;
    Ok(outcome)
}

fn append_bulk_in_transaction(
    conn: &mut Connection,
    mut items: mpsc::Receiver<BulkItem>,
) -> Result<BulkOutcome, StoreError> {
    let err = backend("bulk append");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let mut outcome = BulkOutcome::default();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO events (id, time_ms, tenant, body) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(&err)?;
        loop {
            match items.blocking_recv() {
                Some(BulkItem::Events(rows)) => {
                    for row in rows {
                        let inserted = insert
                            .execute(params![row.id, row.time, row.tenant, row.body])
                            .map_err(&err)?;
                        if inserted == 1 {
                            let seq = tx.last_insert_rowid() as u64;
                            outcome.stored += 1;
                            let lo = outcome.seqs.map_or(seq, |(lo, _)| lo);
                            outcome.seqs = Some((lo, seq));
                        } else {
                            outcome.duplicates += 1;
                        }
                    }
                }
                Some(BulkItem::Commit) => break,
                // Dropping `tx` rolls everything back.
                None => return Err(StoreError::Abandoned),
            }
        }
    }
    tx.commit().map_err(&err)?;
    Ok(outcome)
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn append_bulk(
        &self,
        items: mpsc::Receiver<BulkItem>,
    ) -> Result<BulkOutcome, StoreError> {
        self.with_conn(move |conn| append_bulk_blocking(conn, items))
            .await
    }

    async fn append(&self, rows: Vec<EncodedEvent>) -> Result<Vec<Appended>, StoreError> {
        self.with_conn(move |conn| {
            let err = backend("append");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let mut out = Vec::with_capacity(rows.len());
            {
                // INSERT OR IGNORE skips an id already stored. (An ignored row may still use
                // up an AUTOINCREMENT value: sequence numbers increase but can have gaps.)
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO events (id, time_ms, tenant, body) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(&err)?;
                let mut existing = tx
                    .prepare_cached("SELECT seq FROM events WHERE id = ?1")
                    .map_err(&err)?;
                for EncodedEvent {
                    id,
                    time,
                    tenant,
                    body,
                } in rows
                {
                    let inserted = insert.execute(params![id, time, tenant, body]).map_err(&err)?;
                    let (seq, duplicate) = if inserted == 1 {
                        (tx.last_insert_rowid() as u64, false)
                    } else {
                        (existing.query_row([&id], |r| r.get(0)).map_err(&err)?, true)
                    };
                    out.push(Appended { id, seq, duplicate });
                }
            }
            tx.commit().map_err(&err)?;
            Ok(out)
        })
        .await
    }

    async fn read_after(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.with_conn(move |conn| {
            let err = backend("read");
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, body FROM events WHERE seq > ?1 AND seq <= ?2
                     ORDER BY seq LIMIT ?3",
                )
                .map_err(&err)?;
            let up_to = up_to.min(i64::MAX as u64);
            let rows = stmt
                .query_map(params![after, up_to, limit as i64], |r| {
                    Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(&err)?;
            let mut events = Vec::with_capacity(limit.min(4096));
            for row in rows {
                let (seq, body) = row.map_err(&err)?;
                let event = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                    seq,
                    message: e.to_string(),
                })?;
                events.push(StoredEvent { seq, event });
            }
            Ok(events)
        })
        .await
    }

    async fn cursor(&self, destination: &str) -> Result<u64, StoreError> {
        let destination = destination.to_string();
        self.with_conn(move |conn| cursor_of(conn, &destination).map_err(backend("cursor")))
            .await
    }

    async fn pending_batch(&self, destination: &str) -> Result<Option<Batch>, StoreError> {
        let destination = destination.to_string();
        self.with_conn(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM batches
                     WHERE destination = ?1 AND completed_ms IS NULL"
                ),
                [destination],
                read_batch,
            )
            .optional()
            .map_err(backend("pending batch"))
        })
        .await
    }

    async fn begin_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        let batch = batch.clone();
        self.with_conn(move |conn| {
            let err = backend("begin batch");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let pending: Option<u64> = tx
                .query_row(
                    "SELECT first_seq FROM batches WHERE destination = ?1 AND completed_ms IS NULL",
                    [&batch.destination],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            if let Some(first) = pending {
                return Err(StoreError::Conflict {
                    operation: "begin batch",
                    message: format!(
                        "destination `{}` already has a pending batch starting at {first}",
                        batch.destination
                    ),
                });
            }
            let cursor = cursor_of(&tx, &batch.destination).map_err(&err)?;
            if batch.first_seq <= cursor || batch.last_seq < batch.first_seq {
                return Err(StoreError::Conflict {
                    operation: "begin batch",
                    message: format!(
                        "batch {}..={} of `{}` does not follow its cursor {cursor}",
                        batch.first_seq, batch.last_seq, batch.destination
                    ),
                });
            }
            tx.execute(
                &format!(
                    "INSERT INTO batches ({BATCH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    batch.destination,
                    batch.first_seq,
                    batch.last_seq,
                    batch.key,
                    batch.events,
                    batch.bytes,
                    batch.sha256,
                    batch.created_ms
                ],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn complete_batch(&self, destination: &str, first_seq: u64) -> Result<(), StoreError> {
        let destination = destination.to_string();
        self.with_conn(move |conn| {
            let err = backend("complete batch");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let last: Option<u64> = tx
                .query_row(
                    "SELECT last_seq FROM batches
                     WHERE destination = ?1 AND first_seq = ?2 AND completed_ms IS NULL",
                    params![destination, first_seq],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            let Some(last) = last else {
                return Err(StoreError::Conflict {
                    operation: "complete batch",
                    message: format!(
                        "`{destination}` has no pending batch starting at {first_seq}"
                    ),
                });
            };
            tx.execute(
                "UPDATE batches SET completed_ms = ?3 WHERE destination = ?1 AND first_seq = ?2",
                params![destination, first_seq, now_ms()],
            )
            .map_err(&err)?;
            tx.execute(
                "INSERT INTO cursors (destination, seq) VALUES (?1, ?2)
                 ON CONFLICT (destination) DO UPDATE SET seq = excluded.seq",
                params![destination, last],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn gc(&self, destinations: &[String]) -> Result<u64, StoreError> {
        let destinations = destinations.to_vec();
        self.with_conn(move |conn| {
            let err = backend("gc");
            if destinations.is_empty() {
                return Ok(0);
            }
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let mut lowest = u64::MAX;
            for destination in &destinations {
                lowest = lowest.min(cursor_of(&tx, destination).map_err(&err)?);
            }
            let deleted = tx
                .execute("DELETE FROM events WHERE seq <= ?1", [lowest])
                .map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.with_conn(|conn| {
            let err = backend("stats");
            let (events, first_seq): (u64, Option<u64>) = conn
                .query_row("SELECT count(*), min(seq) FROM events", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(&err)?;
            // sqlite_sequence keeps the highest key ever handed out, even after deletes.
            let last_seq: Option<u64> = conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            Ok(StoreStats {
                events,
                first_seq,
                last_seq: last_seq.unwrap_or_default(),
            })
        })
        .await
    }

    async fn count_after(&self, after: u64) -> Result<u64, StoreError> {
        self.with_conn(move |conn| {
            conn.query_row("SELECT count(*) FROM events WHERE seq > ?1", [after], |r| {
                r.get(0)
            })
            .map_err(backend("count"))
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('last_write_check', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [now_ms().to_string()],
            )
            .map(drop)
            .map_err(backend("write check"))
        })
        .await
    }

    async fn record_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError> {
        let run = run.clone();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO schedule_runs (schedule, started_ms, finished_ms, ok)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (schedule) DO UPDATE SET started_ms = excluded.started_ms,
                     finished_ms = excluded.finished_ms, ok = excluded.ok",
                params![run.schedule, run.started_ms, run.finished_ms, run.ok],
            )
            .map(drop)
            .map_err(backend("record schedule run"))
        })
        .await
    }

    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT schedule, started_ms, finished_ms, ok FROM schedule_runs
                     ORDER BY schedule",
                )
                .map_err(backend("read schedule runs"))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(ScheduleRun {
                        schedule: row.get(0)?,
                        started_ms: row.get(1)?,
                        finished_ms: row.get(2)?,
                        ok: row.get(3)?,
                    })
                })
                .map_err(backend("read schedule runs"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(backend("read schedule runs"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditsync_store::testkit::{batch, event};

    #[tokio::test]
    async fn sequence_numbers_are_not_reused_after_gc_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .append_events(vec![event("a", 1), event("b", 2)])
                .await
                .unwrap();
            store.begin_batch(&batch(1, 2)).await.unwrap();
            store.complete_batch("d", 1).await.unwrap();
            assert_eq!(store.gc(&["d".into()]).await.unwrap(), 2);
        }
        let store = SqliteStore::open(&path).unwrap();
        let appended = store.append_events(vec![event("c", 3)]).await.unwrap();
        assert_eq!(appended[0].seq, 3);
        assert_eq!(
            store
                .read_after(store.cursor("d").await.unwrap(), u64::MAX, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
