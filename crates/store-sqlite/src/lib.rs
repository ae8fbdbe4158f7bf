//! The embedded store of auditsync: one SQLite file (`store.type` `sqlite`).
//!
//! Linking this crate (calling [`link`]) registers it in `auditsync_store::registry`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auditsync_core::registry::{parse_options, Options};
use auditsync_core::ConfigError;
use auditsync_store::{
    Appended, Batch, BulkItem, BulkOutcome, DestinationBacklog, DestinationFailure, EncodedEvent,
    ExportClaim, ExportEvent, ExportPage, ExportStart, GcBounds, IdRetention, LeaseOutcome,
    ManifestRecord, ScheduleRun, Store, StoreError, StoreFactory, StoreStats, StoredBodies,
    StoredEvent, Takers,
};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

mod batch_records;
mod bulk;
mod counts;
use bulk::VISIBLE_HEAD;

/// Keeps this crate linked into a binary that finds it only through the registry.
pub fn link() {}

/// Options of a `{"type": "sqlite"}` store.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file, created with its directory if missing.
    pub path: PathBuf,
    /// `quick` (default): check the file when the store opens; `off`: skip that check.
    #[serde(default)]
    pub integrity_check: IntegrityCheck,
    /// Days the ids of garbage-collected events are remembered, so that a replay is still
    /// a duplicate (default 7; 0: not remembered).
    #[serde(default = "default_dedupe_window_days")]
    pub dedupe_window_days: u32,
    /// At most this many such ids (default 10,000,000, about 40 bytes each on disk).
    #[serde(default = "default_dedupe_max_ids")]
    pub dedupe_max_ids: u64,
}

fn default_dedupe_window_days() -> u32 {
    (IdRetention::default().window_ms / 86_400_000) as u32
}

fn default_dedupe_max_ids() -> u64 {
    IdRetention::default().max_ids
}

fn build(options: &Options) -> Result<Arc<dyn Store>, ConfigError> {
    let config: SqliteConfig = parse_options(options)?;
    if config.dedupe_window_days > 3650 {
        return Err(ConfigError::invalid(
            "dedupe_window_days",
            "at most 3650 (ten years)",
        ));
    }
    let retention = IdRetention {
        window_ms: i64::from(config.dedupe_window_days) * 86_400_000,
        max_ids: config.dedupe_max_ids,
    };
    let store = SqliteStore::open_with(&config.path, config.integrity_check)
        .map_err(|e| ConfigError::invalid("path", format!("{}: {e}", config.path.display())))?;
    Ok(Arc::new(store.with_id_retention(retention)))
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
    /// What SQLite reported when it met damage; once set, writes are refused.
    corruption: Arc<Mutex<Option<String>>>,
    /// How long the ids of collected events are remembered.
    retention: IdRetention,
    /// Whether [`TENANT_INDEX`] is known to exist.
    tenant_index_ready: Arc<AtomicBool>,
    /// Batches waiting to be recorded by [`Store::begin_batch`], in groups.
    begins: Arc<batch_records::BeginQueue>,
    /// Ends when the integrity check at open has given its verdict.
    check: Arc<CheckGate>,
    /// A read-only connection of its own for counting events (opened on first use).
    counting: Arc<Mutex<Option<Connection>>>,
    /// Counts taken on it, from which the next ones start.
    counts: Arc<Mutex<counts::StoreCounts>>,
    /// Events GC deletes per transaction ([`auditsync_store::GC_STEP_EVENTS`]; tests make
    /// it small).
    gc_step_events: usize,
}

/// Open until the integrity check at open has given its verdict, which it runs on a
/// connection of its own: a large store takes about a second per GiB, and the first reads
/// of an export need not wait for it. Everything else does, writes above all, so that
/// nothing is written to a store before it is known to be sound.
#[derive(Debug, Default)]
struct CheckGate {
    done: Mutex<bool>,
    /// Wakes tasks awaiting [`CheckGate::ended`].
    ended_for_tasks: tokio::sync::Notify,
}

impl CheckGate {
    fn is_done(&self) -> bool {
        *lock(&self.done)
    }

    fn finish(&self) {
        *lock(&self.done) = true;
        self.ended_for_tasks.notify_waiters();
    }

    /// Waits, without holding a thread, until the check has ended.
    async fn ended(&self) {
        loop {
            // Made before the look, so that a finish in between still wakes it.
            let woken = self.ended_for_tasks.notified();
            if self.is_done() {
                return;
            }
            woken.await;
        }
    }
}

/// Whether [`SqliteStore::open_with`] checks the database before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrityCheck {
    /// `PRAGMA quick_check` (every page and record, no index cross-check): about a second
    /// per GiB.
    #[default]
    Quick,
    /// No check at open; damage is still found when a read or write meets it.
    Off,
}

/// Whether a SQLite error means the database file is damaged.
fn is_corruption(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
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
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gc_ids (
    hash       BLOB    PRIMARY KEY,
    seq        INTEGER NOT NULL,
    deleted_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gc_ids_by_age ON gc_ids (deleted_ms, seq);
CREATE TABLE IF NOT EXISTS bulk_loads (
    after_seq  INTEGER NOT NULL,
    holder     TEXT    NOT NULL,
    started_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS manifests (
    destination TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    object_key  TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    last_seq    INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (destination, number)
);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS destination_failures (
    destination     TEXT    PRIMARY KEY,
    since_ms        INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    failures        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL
);
INSERT OR IGNORE INTO store_meta (key, value) VALUES ('schema_version', '1');
"#;

/// The page cache (negative: KiB). Appends touch the right edges of the table and of the
/// id index (UUIDv7 ids grow with time); 16 MiB holds those and more. It is also the
/// bound of what a scan leaves resident: the check at open and an export read every page,
/// and with 64 MiB an `export --once` of 1,000,000 events peaked at 106 MiB instead of 37
/// MiB (with 2 MiB), in the same time.
const CACHE_KIB: i64 = -16_384;
/// Pages in the WAL that make a commit checkpoint it (4k 16-KiB pages: 64 MiB).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4_096;
/// The page cache during a bulk append.
const BULK_CACHE_KIB: i64 = -8_192;
/// The page cache of the connection that counts events: a count reads every page of its
/// range once, so a larger cache would only hold on to memory.
const COUNTING_CACHE_KIB: i64 = -1_024;

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
    /// Opens (creating if needed) the database at `path`, and its parent directory, and
    /// checks it ([`IntegrityCheck::Quick`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, IntegrityCheck::Quick)
    }

    /// Opens the database at `path` with the given check. A damaged database opens, but
    /// refuses writes ([`StoreError::Corrupted`]); one SQLite cannot read at all is an error.
    ///
    /// The check runs on a thread of its own: until it ends, writes and most
    /// reads wait, and [`Store::holds_writes`] says so.
    pub fn open_with(path: impl AsRef<Path>, check: IntegrityCheck) -> Result<Self, StoreError> {
        Self::open_checking(path.as_ref(), check, None)
    }

    /// [`Self::open`] whose integrity check does not end until the returned sender is
    /// dropped: for tests of what waits for it and what does not.
    #[doc(hidden)]
    pub fn open_with_check_held(
        path: impl AsRef<Path>,
    ) -> Result<(Self, std::sync::mpsc::Sender<()>), StoreError> {
        let (release, held) = std::sync::mpsc::channel();
        let store = Self::open_checking(path.as_ref(), IntegrityCheck::Quick, Some(held))?;
        Ok((store, release))
    }

    fn open_checking(
        path: &Path,
        check: IntegrityCheck,
        held: Option<std::sync::mpsc::Receiver<()>>,
    ) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Backend {
                operation: "open",
                source: format!("cannot create directory {}: {e}", parent.display()).into(),
                retryable: false,
            })?;
        }
        let conn = Connection::open(&path).map_err(backend("open"))?;
        // Damage met while setting up (or by the check, below) keeps the store open, refusing
        // writes, so that `status`, `/healthz` and `/metrics` can say what is wrong.
        let damage = match Self::configure(&conn) {
            Ok(()) => None,
            Err(e) if is_corruption(&e) => Some(e.to_string()),
            Err(e) => return Err(backend("open")(e)),
        };
        if let Some(d) = &damage {
            tracing::error!(store = %path.display(), damage = %d, "the store is corrupted: writes are refused");
        }
        let gate = Arc::new(CheckGate::default());
        let sound = damage.is_none();
        let corruption = Arc::new(Mutex::new(damage));
        let mut conn = conn;
        if sound && check == IntegrityCheck::Quick {
            let (path, gate, corruption) =
                (path.clone(), Arc::clone(&gate), Arc::clone(&corruption));
            std::thread::Builder::new()
                .name("store-check".into())
                .spawn(move || {
                    check_at_open(&path, &corruption);
                    if let Some(held) = held {
                        // Ends when the sender is dropped.
                        let _ = held.recv();
                    }
                    gate.finish();
                })
                .map_err(|e| StoreError::Backend {
                    operation: "integrity check",
                    source: format!("cannot start the integrity check: {e}").into(),
                    retryable: false,
                })?;
        } else {
            if sound {
                undo_exited_load(&path, &mut conn);
            }
            gate.finish();
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            corruption,
            retention: IdRetention::default(),
            tenant_index_ready: Arc::new(AtomicBool::new(false)),
            begins: Arc::default(),
            check: gate,
            counting: Arc::default(),
            counts: Arc::default(),
            gc_step_events: auditsync_store::GC_STEP_EVENTS as usize,
        })
    }

    fn configure(conn: &Connection) -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // Room for every statement the store runs often (rusqlite keeps 16 by default).
        conn.set_prepared_statement_cache_capacity(64);
        // Larger pages: fewer B-tree splits and WAL frames per event (takes effect when the
        // file is created).
        conn.pragma_update(None, "page_size", 16_384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        // Checkpoint the WAL every 4k pages (64 MiB) instead of every 1k: fewer, larger
        // copies into the database file under a steady ingest.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.execute_batch(SCHEMA)?;
        Self::add_batch_times(conn)
    }

    /// Stores made before manifests lack the batches' event times: the columns are added
    /// (empty for old batches), once, under a write lock so two openers do not race.
    fn add_batch_times(conn: &Connection) -> rusqlite::Result<()> {
        let has = |conn: &Connection| -> rusqlite::Result<bool> {
            conn.query_row(
                "SELECT count(*) FROM pragma_table_info('batches') WHERE name = 'earliest_ms'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
        };
        if has(conn)? {
            return Ok(());
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = if has(conn)? {
            Ok(())
        } else {
            conn.execute_batch(
                "ALTER TABLE batches ADD COLUMN earliest_ms INTEGER;
                 ALTER TABLE batches ADD COLUMN latest_ms INTEGER;",
            )
        };
        conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
        result
    }

    /// Remembers the ids of collected events as `retention` says (the default is 7 days,
    /// at most 10,000,000 ids).
    pub fn with_id_retention(mut self, retention: IdRetention) -> Self {
        self.retention = retention;
        self
    }

    /// Refuses a write once damage has been found (waiting for the check at open first).
    async fn refuse_if_corrupted(&self) -> Result<(), StoreError> {
        self.check.ended().await;
        match lock(&self.corruption).as_ref() {
            None => Ok(()),
            Some(detail) => Err(StoreError::Corrupted {
                store: self.path.display().to_string(),
                detail: detail.clone(),
            }),
        }
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking SQLite work off the async runtime's worker threads, once the integrity
    /// check at open has ended.
    async fn with_conn<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.check.ended().await;
        self.ahead_of_check(work).await
    }

    /// [`Self::with_conn`] without waiting for the integrity check at open: only for reads
    /// that write nothing (not even an index), which an export makes while it waits.
    async fn ahead_of_check<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        self.blocking(move || {
            // A panic while holding the lock leaves SQLite consistent (transactions roll
            // back on drop), so a poisoned lock is still usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut guard)
        })
        .await
    }

    /// Builds [`TENANT_INDEX`] if it is not there yet, for the counting connection to read:
    /// the index is made (a write) on the writer's connection.
    async fn build_tenant_index(&self) -> Result<(), StoreError> {
        if self.tenant_index_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let index_ready = Arc::clone(&self.tenant_index_ready);
        self.with_conn(move |conn| ensure_tenant_index(conn, &index_ready))
            .await
    }

    /// Runs `work` on the blocking pool; damage it meets is remembered
    /// ([`Self::note_corruption`]).
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| StoreError::Backend {
                operation: "task",
                source: Box::new(e),
                retryable: false,
            })?
            .map_err(|e| self.note_corruption(e))
    }

    /// Runs a count on the store's counting connection, opened on first use.
    ///
    /// A count walks every event of its range: about a second per 10,000,000 from the page
    /// cache, 17 s from disk. On the writer's connection it held back every append for that
    /// long (a POST answered after 1.8 s while `/metrics` counted a 10,000,000-event store).
    /// A reader of its own does not: SQLite's WAL lets readers and the writer go on at once.
    async fn counting<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (counting, path) = (Arc::clone(&self.counting), self.path.clone());
        self.blocking(move || {
            let mut guard = lock(&counting);
            if guard.is_none() {
                *guard = Some(open_counting(&path).map_err(backend("open"))?);
            }
            work(guard.as_ref().expect("opened above"))
        })
        .await
    }

    /// Turns an error that met damage into [`StoreError::Corrupted`], and remembers it so
    /// that every later write is refused.
    fn note_corruption(&self, err: StoreError) -> StoreError {
        let StoreError::Backend { source, .. } = &err else {
            return err;
        };
        let Some(sqlite) = source.downcast_ref::<rusqlite::Error>() else {
            return err;
        };
        if !is_corruption(sqlite) {
            return err;
        }
        let detail = sqlite.to_string();
        let mut seen = lock(&self.corruption);
        if seen.is_none() {
            tracing::error!(store = %self.path.display(), damage = %detail, "the store is corrupted: writes are refused from now on");
            *seen = Some(detail.clone());
        }
        StoreError::Corrupted {
            store: self.path.display().to_string(),
            detail,
        }
    }
}

/// The integrity check at open, on a connection of its own: damage it finds (or a check
/// that cannot run) is remembered in `corruption`, so that every write is refused; a sound
/// store then has a bulk load its process abandoned undone.
fn check_at_open(path: &Path, corruption: &Mutex<Option<String>>) {
    let verdict = Connection::open(path).and_then(|conn| {
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok((quick_check(&conn)?, conn))
    });
    let damage = match verdict {
        Ok((None, mut conn)) => {
            undo_exited_load(path, &mut conn);
            return;
        }
        Ok((Some(damage), _)) => damage,
        Err(e) if is_corruption(&e) => e.to_string(),
        Err(e) => format!("the integrity check could not run, so writes are refused: {e}"),
    };
    tracing::error!(store = %path.display(), damage = %damage, "the store is corrupted: writes are refused");
    let mut seen = lock(corruption);
    seen.get_or_insert(damage);
}

/// Undoes the bulk load of a process that exited, which holds back every reader and writer.
fn undo_exited_load(path: &Path, conn: &mut Connection) {
    if let Err(e) = bulk::undo_exited_load(conn) {
        // A read-only store still opens; its next writer undoes the load.
        tracing::warn!(store = %path.display(), error = %e, "could not undo the bulk ingest of a process that exited");
    }
}

/// The key under which a collected event's id is remembered: 16 bytes of its SHA-256, so
/// that the record stays small whatever the ids look like (a collision is 1 in 2^64 at ten
/// billion ids).
fn id_hash(id: &str) -> [u8; 16] {
    let digest = Sha256::digest(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Looks up ids of collected events; does nothing while none is remembered.
struct Remembered<'t> {
    lookup: Option<rusqlite::CachedStatement<'t>>,
}

impl<'t> Remembered<'t> {
    fn new(tx: &'t rusqlite::Transaction<'_>) -> rusqlite::Result<Self> {
        let any: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM gc_ids)", [], |r| r.get(0))?;
        let lookup = if any {
            Some(tx.prepare_cached("SELECT seq FROM gc_ids WHERE hash = ?1")?)
        } else {
            None
        };
        Ok(Self { lookup })
    }

    /// The sequence number the id had before it was collected, if it is remembered.
    fn seq_of(&mut self, id: &str) -> rusqlite::Result<Option<u64>> {
        match &mut self.lookup {
            None => Ok(None),
            Some(stmt) => stmt.query_row([&id_hash(id)[..]], |r| r.get(0)).optional(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Up to `limit` stored bodies with `after < seq <= up_to`, in sequence order, each decoded
/// by `decode`.
fn read_bodies<T>(
    conn: &mut Connection,
    tenant: Option<&str>,
    after: u64,
    up_to: u64,
    limit: usize,
    decode: impl Fn(u64, &str) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut events = Vec::with_capacity(limit.min(4096));
    for_each_body(conn, tenant, after, up_to, limit, |seq, body| {
        events.push(decode(seq, body)?);
        Ok(())
    })?;
    Ok(events)
}

/// Up to `limit` stored bodies with `after < seq <= up_to`, in sequence order, as they are.
fn read_body_texts(
    conn: &mut Connection,
    tenant: Option<&str>,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<StoredBodies, StoreError> {
    // Stored bodies run to about half a kilobyte; the buffer grows if they are larger.
    let mut bodies = StoredBodies::with_capacity(limit.min(4096), limit.min(4096) * 512);
    for_each_body(conn, tenant, after, up_to, limit, |seq, body| {
        bodies.push(seq, body);
        Ok(())
    })?;
    Ok(bodies)
}

/// Calls `visit` with each of up to `limit` stored bodies with `after < seq <= up_to`, in
/// sequence order, read in place.
fn for_each_body(
    conn: &mut Connection,
    tenant: Option<&str>,
    after: u64,
    up_to: u64,
    limit: usize,
    mut visit: impl FnMut(u64, &str) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let err = backend("read");
    let up_to = up_to.min(i64::MAX as u64);
    let limit_param = limit as i64;
    let mut stmt;
    let mut rows = match tenant {
        Some(tenant) => {
            stmt = conn
                .prepare_cached(&format!(
                    "SELECT seq, body FROM events INDEXED BY {TENANT_INDEX}
                         WHERE tenant = ?4 AND seq > ?1 AND seq <= ?2
                         AND seq <= {VISIBLE_HEAD} ORDER BY seq LIMIT ?3"
                ))
                .map_err(&err)?;
            stmt.query(params![after, up_to, limit_param, tenant])
        }
        None => {
            stmt = conn
                .prepare_cached(&format!(
                    "SELECT seq, body FROM events WHERE seq > ?1 AND seq <= ?2
                         AND seq <= {VISIBLE_HEAD} ORDER BY seq LIMIT ?3"
                ))
                .map_err(&err)?;
            stmt.query(params![after, up_to, limit_param])
        }
    }
    .map_err(&err)?;
    while let Some(row) = rows.next().map_err(&err)? {
        let seq: u64 = row.get(0).map_err(&err)?;
        // Read in place: no copy of the body before it is visited.
        let body = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(&err)?;
        visit(seq, body)?;
    }
    Ok(())
}

/// What one step of GC did.
struct GcStep {
    deleted: u64,
    /// Where the next step starts (after this sequence number); `None` when this step
    /// reached the end of what may be deleted.
    next_after: Option<u64>,
}

/// Deletes, in one transaction, up to `step_events` events above `after` that every
/// destination taking them has, remembering their ids as `retention` says. The bounds are
/// read again at each step: cursors only move forward, so a later step may delete more.
fn gc_step(
    conn: &mut Connection,
    takers: &Takers,
    retention: IdRetention,
    after: u64,
    step_events: usize,
) -> Result<GcStep, StoreError> {
    let err = backend("gc");
    let nothing = GcStep {
        deleted: 0,
        next_after: None,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    // Never into an open bulk load, whatever a cursor says.
    let visible: u64 = tx
        .query_row(&format!("SELECT {VISIBLE_HEAD}"), [], |r| r.get(0))
        .map_err(&err)?;
    let mut cursors = std::collections::HashMap::new();
    for destination in takers.names() {
        let seq = cursor_of(&tx, &destination).map_err(&err)?;
        cursors.insert(destination, seq);
    }
    let bounds = GcBounds::of(takers, visible, |d| cursors[d]);
    if bounds.is_nothing() {
        return Ok(nothing);
    }
    // With tenant destinations, each row's bound is its tenant's (from a temporary table),
    // else the bound of everything else. Both forms take ?1 and ?2 (the first ignores ?2).
    let (doomed, bound, others) = if bounds.by_tenant.is_empty() {
        ("seq <= ?1", bounds.others, bounds.others)
    } else {
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS gc_bounds
                 (tenant TEXT PRIMARY KEY, up_to INTEGER NOT NULL);
             DELETE FROM temp.gc_bounds;",
        )
        .map_err(&err)?;
        let mut insert = tx
            .prepare_cached("INSERT INTO temp.gc_bounds (tenant, up_to) VALUES (?1, ?2)")
            .map_err(&err)?;
        for (tenant, up_to) in &bounds.by_tenant {
            insert.execute(params![tenant, up_to]).map_err(&err)?;
        }
        (
            "seq <= ?1 AND seq <= coalesce(
                 (SELECT up_to FROM temp.gc_bounds b WHERE b.tenant = events.tenant), ?2)",
            bounds.highest(),
            bounds.others,
        )
    };
    // This step's events: the first `step_events` to delete above `after`, their ids
    // remembered as they are read.
    let remember_ids = retention.window_ms > 0 && retention.max_ids > 0;
    let now = now_ms();
    let (mut read, mut last_read) = (0, after);
    {
        let mut rows_of_step = tx
            .prepare_cached(&format!(
                "SELECT id, seq FROM events WHERE seq > ?3 AND ({doomed}) ORDER BY seq LIMIT ?4"
            ))
            .map_err(&err)?;
        let mut remember = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO gc_ids (hash, seq, deleted_ms) VALUES (?1, ?2, ?3)",
            )
            .map_err(&err)?;
        let mut rows = rows_of_step
            .query(params![bound, others, after, step_events as i64])
            .map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let seq: u64 = row.get(1).map_err(&err)?;
            if remember_ids {
                let id = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(&err)?;
                remember
                    .execute(params![&id_hash(id)[..], seq, now])
                    .map_err(&err)?;
            }
            (read, last_read) = (read + 1, seq);
        }
    }
    if read == 0 {
        return Ok(nothing);
    }
    let deleted = tx
        .execute(
            &format!("DELETE FROM events WHERE seq > ?3 AND seq <= ?4 AND ({doomed})"),
            params![bound, others, after, last_read],
        )
        .map_err(&err)?;
    if deleted > 0 {
        count_collection(&tx).map_err(&err)?;
    }
    tx.commit().map_err(&err)?;
    Ok(GcStep {
        deleted: deleted as u64,
        // A full step may have left more.
        next_after: (read == step_events).then_some(last_read),
    })
}

/// Forgets the ids of collected events past the retention window, then the oldest beyond
/// its cap.
fn forget_old_ids(conn: &mut Connection, retention: IdRetention) -> Result<(), StoreError> {
    let err = backend("gc");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    tx.execute(
        "DELETE FROM gc_ids WHERE deleted_ms < ?1",
        [now_ms().saturating_sub(retention.window_ms)],
    )
    .map_err(&err)?;
    let held: u64 = tx
        .query_row("SELECT count(*) FROM gc_ids", [], |r| r.get(0))
        .map_err(&err)?;
    if held > retention.max_ids {
        tx.execute(
            "DELETE FROM gc_ids WHERE hash IN
                 (SELECT hash FROM gc_ids ORDER BY deleted_ms, seq LIMIT ?1)",
            [held - retention.max_ids],
        )
        .map_err(&err)?;
    }
    tx.commit().map_err(&err)
}

/// The `store_meta` key of the number of GC steps that deleted events: a count of events
/// remembered from before the last of them is not used again ([`counts`]).
const COLLECTIONS_KEY: &str = "gc_collections";

/// Adds one to the [`COLLECTIONS_KEY`], in the transaction that deleted events.
fn count_collection(tx: &Connection) -> rusqlite::Result<()> {
    cached_execute(
        tx,
        "INSERT INTO store_meta (key, value) VALUES (?1, '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [COLLECTIONS_KEY],
    )
    .map(drop)
}

/// The events readers may see above `after` (of `tenant` alone, if given), and the highest
/// sequence number they may see, read in `snapshot` (a read transaction on the counting
/// connection, so that the head, the collections and the counts agree). The count starts
/// from one taken before when that walks fewer events ([`counts`]).
fn count_visible_after(
    snapshot: &Connection,
    counts: &Mutex<counts::StoreCounts>,
    tenant: Option<&str>,
    after: u64,
) -> Result<(u64, u64), StoreError> {
    let err = backend("count");
    let head = visible_last_seq(snapshot)?;
    let collections: u64 = cached_row(
        snapshot,
        "SELECT CAST(value AS INTEGER) FROM store_meta WHERE key = ?1",
        [COLLECTIONS_KEY],
        |r| r.get(0),
    )
    .optional()
    .map_err(&err)?
    .unwrap_or_default();
    let events = lock(counts)
        .of(tenant)
        .count(after, head, collections, |lo, hi| match tenant {
            None => cached_row(
                snapshot,
                "SELECT count(*) FROM events WHERE seq > ?1 AND seq <= ?2",
                [lo, hi],
                |r| r.get(0),
            ),
            Some(tenant) => cached_row(
                snapshot,
                &format!(
                    "SELECT count(*) FROM events INDEXED BY {TENANT_INDEX}
                     WHERE tenant = ?1 AND seq > ?2 AND seq <= ?3"
                ),
                params![tenant, lo, hi],
                |r| r.get(0),
            ),
        })
        .map_err(&err)?;
    Ok((events, head))
}

/// The time of the first event in `(after, head]` (of `tenant` alone, if given), from its
/// `time_ms` column: the event need not be read.
fn first_time_after(
    conn: &Connection,
    tenant: Option<&str>,
    after: u64,
    head: u64,
) -> rusqlite::Result<Option<i64>> {
    match tenant {
        Some(tenant) => cached_row(
            conn,
            &format!(
                "SELECT time_ms FROM events INDEXED BY {TENANT_INDEX}
                 WHERE tenant = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT 1"
            ),
            params![tenant, after, head],
            |r| r.get(0),
        ),
        None => cached_row(
            conn,
            "SELECT time_ms FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT 1",
            [after, head],
            |r| r.get(0),
        ),
    }
    .optional()
}

/// A read-only connection for [`SqliteStore::counting`].
fn open_counting(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", COUNTING_CACHE_KIB)?;
    Ok(conn)
}

/// The highest sequence number readers may see: the highest ever handed out
/// (`sqlite_sequence` keeps it even after deletes), or below an open bulk load.
fn visible_last_seq(conn: &Connection) -> Result<u64, StoreError> {
    let last_seq: Option<u64> = conn
        .query_row(
            &format!("SELECT MIN(seq, {VISIBLE_HEAD}) FROM sqlite_sequence WHERE name = 'events'"),
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend("stats"))?;
    Ok(last_seq.unwrap_or_default())
}

/// The index of events by tenant. It is built the first time a tenant's destination reads
/// (see [`SqliteStore::read_tenant_for_export`]), not with the table, so that a store
/// without tenant destinations does not pay for it on every insert. Its rows are
/// (tenant, rowid), and the rowid is `seq`: a tenant's events come out in sequence order.
const TENANT_INDEX: &str = "events_by_tenant";

/// Builds [`TENANT_INDEX`] unless `ready` says it exists.
fn ensure_tenant_index(conn: &Connection, ready: &AtomicBool) -> Result<(), StoreError> {
    if !ready.load(Ordering::Acquire) {
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS {TENANT_INDEX} ON events (tenant)"
        ))
        .map_err(backend("index tenants"))?;
        ready.store(true, Ordering::Release);
    }
    Ok(())
}

/// Runs `work` with `synchronous=NORMAL`: its commit is not fsynced itself, only by the
/// next `synchronous=FULL` commit or checkpoint (the WAL is written in order, so that one
/// syncs it too). For writes a crash may lose without harm (leases, a batch's completion).
fn without_fsync<T>(
    conn: &mut Connection,
    work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(backend("synchronous"))?;
    let result = work(conn);
    let restored = conn
        .pragma_update(None, "synchronous", "FULL")
        .map_err(backend("synchronous"));
    let value = result?;
    restored?;
    Ok(value)
}

/// `PRAGMA quick_check`: `None` when it answers `ok`, else its first findings.
fn quick_check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let findings = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(match findings.as_slice() {
        [ok] if ok == "ok" => None,
        _ => Some(format!("integrity check: {}", findings.join("; "))),
    })
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
        earliest_ms: row.get(8)?,
        latest_ms: row.get(9)?,
    })
}

const BATCH_COLUMNS: &str =
    "destination, first_seq, last_seq, object_key, events, bytes, sha256, created_ms, earliest_ms, latest_ms";

fn read_manifest(row: &rusqlite::Row<'_>) -> rusqlite::Result<ManifestRecord> {
    Ok(ManifestRecord {
        destination: row.get(0)?,
        number: row.get(1)?,
        key: row.get(2)?,
        sha256: row.get(3)?,
        last_seq: row.get(4)?,
        created_ms: row.get(5)?,
    })
}

const MANIFEST_COLUMNS: &str = "destination, number, object_key, sha256, last_seq, created_ms";

/// `query_row` through the connection's statement cache: the statements of an export run
/// are run once per destination, a thousand times for a thousand tenants, and parsing them
/// anew each time showed in profiles.
fn cached_row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, read)
}

/// `execute` through the connection's statement cache (see [`cached_row`]).
fn cached_execute<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// The destination's batch recorded but not completed, if any.
fn pending_of(conn: &Connection, destination: &str) -> rusqlite::Result<Option<Batch>> {
    cached_row(
        conn,
        &format!(
            "SELECT {BATCH_COLUMNS} FROM batches
             WHERE destination = ?1 AND completed_ms IS NULL"
        ),
        [destination],
        read_batch,
    )
    .optional()
}

/// Whether any visible event with `after < seq <= up_to` is there (of `tenant` only, if
/// given: the tenant index must be ready).
fn has_events(
    conn: &Connection,
    tenant: Option<&str>,
    after: u64,
    up_to: u64,
) -> rusqlite::Result<bool> {
    let found: Option<i64> = match tenant {
        Some(tenant) => cached_row(
            conn,
            &format!(
                "SELECT 1 FROM events INDEXED BY {TENANT_INDEX}
                 WHERE tenant = ?1 AND seq > ?2 AND seq <= ?3 AND seq <= {VISIBLE_HEAD} LIMIT 1"
            ),
            params![tenant, after, up_to],
            |r| r.get(0),
        ),
        None => cached_row(
            conn,
            &format!(
                "SELECT 1 FROM events WHERE seq > ?1 AND seq <= ?2 AND seq <= {VISIBLE_HEAD} LIMIT 1"
            ),
            params![after, up_to],
            |r| r.get(0),
        ),
    }
    .optional()?;
    Ok(found.is_some())
}

/// The other holder of the lease `name` and when its hold ends, if another than `holder`
/// holds it now (an expired lease is free).
fn held_by_other(
    conn: &Connection,
    name: &str,
    holder: &str,
) -> rusqlite::Result<Option<(String, i64)>> {
    let current: Option<(String, i64)> = cached_row(
        conn,
        "SELECT holder, expires_ms FROM leases WHERE name = ?1",
        [name],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()?;
    Ok(current.filter(|(other, expires_ms)| other != holder && *expires_ms > now_ms()))
}

/// Takes the lease `name` for `holder` unless another holds it (inside the caller's
/// IMMEDIATE transaction, so that the read and the write are one step for every process).
fn take_lease(
    conn: &Connection,
    name: &str,
    holder: &str,
    ttl_ms: i64,
) -> rusqlite::Result<LeaseOutcome> {
    if let Some((holder, expires_ms)) = held_by_other(conn, name, holder)? {
        return Ok(LeaseOutcome::HeldBy { holder, expires_ms });
    }
    let expires_ms = write_lease(conn, name, holder, ttl_ms)?;
    Ok(LeaseOutcome::Acquired { expires_ms })
}

/// Records `holder` as the lease's holder for `ttl_ms` from now; returns when it expires.
/// The caller has checked, in the same transaction, that no other holds it.
fn write_lease(conn: &Connection, name: &str, holder: &str, ttl_ms: i64) -> rusqlite::Result<i64> {
    let expires_ms = now_ms().saturating_add(ttl_ms.max(1));
    cached_execute(
        conn,
        "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
             expires_ms = excluded.expires_ms",
        params![name, holder, expires_ms],
    )?;
    Ok(expires_ms)
}

fn cursor_of(conn: &Connection, destination: &str) -> rusqlite::Result<u64> {
    cached_row(
        conn,
        "SELECT seq FROM cursors WHERE destination = ?1",
        [destination],
        |r| r.get(0),
    )
    .optional()
    .map(Option::unwrap_or_default)
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
        self.refuse_if_corrupted().await?;
        let path = self.path.clone();
        self.with_conn(move |conn| bulk::append_bulk_blocking(conn, &path, items))
            .await
    }

    async fn append(&self, rows: Vec<EncodedEvent>) -> Result<Vec<Appended>, StoreError> {
        self.refuse_if_corrupted().await?;
        self.with_conn(move |conn| bulk::write(conn, |tx| {
            let err = backend("append");
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
                let mut remembered = Remembered::new(&tx).map_err(&err)?;
                for EncodedEvent {
                    id,
                    time,
                    tenant,
                    body,
                } in rows
                {
                    if let Some(seq) = remembered.seq_of(&id).map_err(&err)? {
                        out.push(Appended {
                            id,
                            seq,
                            duplicate: true,
                        });
                        continue;
                    }
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
        }))
        .await
    }

    async fn read_after(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.with_conn(move |conn| {
            read_bodies(conn, None, after, up_to, limit, StoredEvent::from_body)
        })
        .await
    }

    async fn read_for_export(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<ExportEvent>, StoreError> {
        self.with_conn(move |conn| {
            read_bodies(conn, None, after, up_to, limit, ExportEvent::from_body)
        })
        .await
    }

    async fn read_tenant_for_export(
        &self,
        tenant: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<ExportEvent>, StoreError> {
        let tenant = tenant.to_string();
        let index_ready = Arc::clone(&self.tenant_index_ready);
        self.with_conn(move |conn| {
            ensure_tenant_index(conn, &index_ready)?;
            let tenant = Some(tenant.as_str());
            read_bodies(conn, tenant, after, up_to, limit, ExportEvent::from_body)
        })
        .await
    }

    async fn read_page_for_export(
        &self,
        tenant: Option<&str>,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<ExportPage, StoreError> {
        let Some(tenant) = tenant.map(str::to_string) else {
            // Writes nothing: may go ahead of the check at open.
            return self
                .ahead_of_check(move |conn| {
                    read_body_texts(conn, None, after, up_to, limit).map(ExportPage::Bodies)
                })
                .await;
        };
        let index_ready = Arc::clone(&self.tenant_index_ready);
        self.with_conn(move |conn| {
            ensure_tenant_index(conn, &index_ready)?;
            read_body_texts(conn, Some(&tenant), after, up_to, limit).map(ExportPage::Bodies)
        })
        .await
    }

    async fn count_tenant_after(&self, tenant: &str, after: u64) -> Result<u64, StoreError> {
        let tenant = tenant.to_string();
        self.build_tenant_index().await?;
        let counts = Arc::clone(&self.counts);
        self.counting(move |conn| {
            let snapshot = conn.unchecked_transaction().map_err(backend("count"))?;
            Ok(count_visible_after(&snapshot, &counts, Some(&tenant), after)?.0)
        })
        .await
    }

    async fn cursor(&self, destination: &str) -> Result<u64, StoreError> {
        let destination = destination.to_string();
        // Writes nothing: may go ahead of the check at open.
        self.ahead_of_check(move |conn| cursor_of(conn, &destination).map_err(backend("cursor")))
            .await
    }

    async fn backlog_of(
        &self,
        destination: &str,
        tenant: Option<&str>,
    ) -> Result<DestinationBacklog, StoreError> {
        self.check.ended().await;
        if tenant.is_some() {
            self.build_tenant_index().await?;
        }
        let (destination, tenant) = (destination.to_string(), tenant.map(str::to_string));
        let counts = Arc::clone(&self.counts);
        // One trip, one snapshot: the cursor, the count after it and its first event agree.
        self.counting(move |conn| {
            let err = backend("backlog");
            let snapshot = conn.unchecked_transaction().map_err(&err)?;
            let cursor = cursor_of(&snapshot, &destination).map_err(&err)?;
            let (events, head) =
                count_visible_after(&snapshot, &counts, tenant.as_deref(), cursor)?;
            let oldest_ms =
                first_time_after(&snapshot, tenant.as_deref(), cursor, head).map_err(&err)?;
            Ok(DestinationBacklog {
                cursor,
                events,
                oldest_ms,
            })
        })
        .await
    }

    async fn pending_batch(&self, destination: &str) -> Result<Option<Batch>, StoreError> {
        let destination = destination.to_string();
        self.with_conn(move |conn| pending_of(conn, &destination).map_err(backend("pending batch")))
            .await
    }

    async fn begin_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        self.refuse_if_corrupted().await?;
        // Recorded by whichever begin reaches the connection first, together with every
        // begin waiting then: one commit and one fsync for the exports running at once.
        let outcome = self.begins.push(batch.clone());
        let begins = Arc::clone(&self.begins);
        self.with_conn(move |conn| {
            begins.record_waiting(conn);
            Ok(())
        })
        .await?;
        outcome
            .await
            .map_err(|_| StoreError::Backend {
                operation: "begin batch",
                source: "the batch was dropped before it was recorded".into(),
                retryable: true,
            })?
            .map_err(|e| self.note_corruption(e))
    }

    async fn complete_batch(&self, destination: &str, first_seq: u64) -> Result<(), StoreError> {
        self.refuse_if_corrupted().await?;
        let destination = destination.to_string();
        // Without an fsync of its own: if a crash loses it, the batch is still pending and
        // is delivered again under its key, where the same bytes count as delivered.
        self.with_conn(move |conn| {
            without_fsync(conn, |conn| {
                let err = backend("complete batch");
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(&err)?;
                let last: Option<u64> = cached_row(
                    &tx,
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
                cached_execute(&tx,
                "UPDATE batches SET completed_ms = ?3 WHERE destination = ?1 AND first_seq = ?2",
                params![destination, first_seq, now_ms()],
            )
            .map_err(&err)?;
                cached_execute(
                    &tx,
                    "INSERT INTO cursors (destination, seq) VALUES (?1, ?2)
                 ON CONFLICT (destination) DO UPDATE SET seq = excluded.seq",
                    params![destination, last],
                )
                .map_err(&err)?;
                tx.commit().map_err(&err)
            })
        })
        .await
    }

    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |conn| {
            let err = backend("seq of");
            let held: Option<u64> = conn
                .query_row("SELECT seq FROM events WHERE id = ?1", [&id], |r| r.get(0))
                .optional()
                .map_err(&err)?;
            if held.is_some() {
                return Ok(held);
            }
            conn.query_row(
                "SELECT seq FROM gc_ids WHERE hash = ?1",
                [id_hash(&id).as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)
        })
        .await
    }

    async fn completed_batches(
        &self,
        destination: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        let destination = destination.to_string();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {BATCH_COLUMNS} FROM batches
                     WHERE destination = ?1 AND first_seq > ?2 AND completed_ms IS NOT NULL
                     ORDER BY first_seq LIMIT ?3"
                ))
                .map_err(backend("completed batches"))?;
            let rows = stmt
                .query_map(params![destination, after_seq, limit as i64], read_batch)
                .map_err(backend("completed batches"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(backend("completed batches"))
        })
        .await
    }

    async fn manifest_head(&self, destination: &str) -> Result<Option<ManifestRecord>, StoreError> {
        let destination = destination.to_string();
        self.with_conn(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {MANIFEST_COLUMNS} FROM manifests WHERE destination = ?1
                     ORDER BY number DESC LIMIT 1"
                ),
                [destination],
                read_manifest,
            )
            .optional()
            .map_err(backend("manifest head"))
        })
        .await
    }

    async fn record_manifest(&self, record: &ManifestRecord) -> Result<(), StoreError> {
        self.refuse_if_corrupted().await?;
        let record = record.clone();
        self.with_conn(move |conn| {
            let err = backend("record manifest");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let head: Option<u64> = tx
                .query_row(
                    "SELECT max(number) FROM manifests WHERE destination = ?1",
                    [&record.destination],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            let expected = head.unwrap_or(0) + 1;
            if record.number != expected {
                return Err(StoreError::Conflict {
                    operation: "record manifest",
                    message: format!(
                        "manifest {} of `{}` does not follow its head (the next is {expected})",
                        record.number, record.destination
                    ),
                });
            }
            tx.execute(
                &format!(
                    "INSERT INTO manifests ({MANIFEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    record.destination,
                    record.number,
                    record.key,
                    record.sha256,
                    record.last_seq,
                    record.created_ms
                ],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn gc(&self, destinations: &[String]) -> Result<u64, StoreError> {
        self.gc_takers(&Takers::all(destinations)).await
    }

    async fn gc_takers(&self, takers: &Takers) -> Result<u64, StoreError> {
        self.refuse_if_corrupted().await?;
        let retention = self.retention;
        let step_events = self.gc_step_events;
        let (mut deleted, mut after) = (0, 0);
        loop {
            // Each step is a call of its own: appends waiting for the connection go between.
            let takers = takers.clone();
            // A step lost in a crash is done again by the next GC (its ids and its
            // deletions commit together), so it is not fsynced itself.
            let step = self
                .with_conn(move |conn| {
                    without_fsync(conn, |conn| {
                        gc_step(conn, &takers, retention, after, step_events)
                    })
                })
                .await?;
            if auditsync_store::gc_progress_due(deleted, step.deleted) {
                tracing::info!(
                    deleted = deleted + step.deleted,
                    "garbage collection goes on"
                );
            }
            deleted += step.deleted;
            match step.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        if deleted > 0 {
            self.with_conn(move |conn| forget_old_ids(conn, retention))
                .await?;
        }
        Ok(deleted)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        // Writes nothing: may go ahead of the check at open.
        let counts = Arc::clone(&self.counts);
        self.counting(move |conn| {
            let err = backend("stats");
            let snapshot = conn.unchecked_transaction().map_err(&err)?;
            let (events, last_seq) = count_visible_after(&snapshot, &counts, None, 0)?;
            let first_seq = snapshot
                .query_row(
                    "SELECT min(seq) FROM events WHERE seq <= ?1",
                    [last_seq],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            Ok(StoreStats {
                events,
                first_seq,
                last_seq,
            })
        })
        .await
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        // Writes nothing: may go ahead of the check at open.
        self.ahead_of_check(|conn| visible_last_seq(conn)).await
    }

    async fn count_after(&self, after: u64) -> Result<u64, StoreError> {
        self.check.ended().await;
        let counts = Arc::clone(&self.counts);
        self.counting(move |conn| {
            let snapshot = conn.unchecked_transaction().map_err(backend("count"))?;
            Ok(count_visible_after(&snapshot, &counts, None, after)?.0)
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.refuse_if_corrupted().await?;
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

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        self.refuse_if_corrupted().await?;
        let (name, holder) = (name.to_string(), holder.to_string());
        // A lease a crash loses belonged to the process that crashed: no fsync needed.
        self.with_conn(move |conn| {
            without_fsync(conn, |conn| {
                let err = backend("acquire lease");
                // IMMEDIATE: the read and the write below are one step for every process.
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(&err)?;
                let outcome = take_lease(&tx, &name, &holder, ttl_ms).map_err(&err)?;
                tx.commit().map_err(&err)?;
                Ok(outcome)
            })
        })
        .await
    }

    async fn start_export(&self, claim: &ExportClaim<'_>) -> Result<ExportStart, StoreError> {
        self.refuse_if_corrupted().await?;
        let (destination, lease, holder) = (
            claim.destination.to_string(),
            claim.lease.to_string(),
            claim.holder.to_string(),
        );
        let tenant = claim.tenant.map(str::to_string);
        let (up_to, ttl_ms) = (claim.up_to, claim.ttl_ms);
        let index_ready = Arc::clone(&self.tenant_index_ready);
        self.with_conn(move |conn| {
            if tenant.is_some() {
                ensure_tenant_index(conn, &index_ready)?;
            }
            // Like a lease alone, nothing here needs an fsync (see `acquire_lease`).
            without_fsync(conn, |conn| {
                let err = backend("start export");
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(&err)?;
                if let Some((holder, expires_ms)) =
                    held_by_other(&tx, &lease, &holder).map_err(&err)?
                {
                    return Ok(ExportStart::HeldBy { holder, expires_ms });
                }
                let pending = pending_of(&tx, &destination).map_err(&err)?;
                let cursor = cursor_of(&tx, &destination).map_err(&err)?;
                let idle = pending.is_none()
                    && (cursor >= up_to
                        || !has_events(&tx, tenant.as_deref(), cursor, up_to).map_err(&err)?);
                if idle {
                    // Dropped without a write: the lease stays as it was.
                    return Ok(ExportStart::Idle);
                }
                write_lease(&tx, &lease, &holder, ttl_ms).map_err(&err)?;
                tx.commit().map_err(&err)?;
                Ok(ExportStart::Started { pending, cursor })
            })
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with_conn(move |conn| {
            without_fsync(conn, |conn| {
                cached_execute(
                    conn,
                    "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                    params![name, holder],
                )
                .map(drop)
                .map_err(backend("release lease"))
            })
        })
        .await
    }

    fn corruption(&self) -> Option<String> {
        lock(&self.corruption).clone()
    }

    async fn checked(&self) {
        self.check.ended().await;
    }

    fn holds_writes(&self) -> bool {
        !self.check.is_done()
    }

    async fn record_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError> {
        self.refuse_if_corrupted().await?;
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

    async fn record_destination_failure(
        &self,
        destination: &str,
        failure: Option<&DestinationFailure>,
    ) -> Result<(), StoreError> {
        self.refuse_if_corrupted().await?;
        let destination = destination.to_string();
        let failure = failure.cloned();
        self.with_conn(move |conn| {
            match failure {
                Some(f) => conn.execute(
                    "INSERT INTO destination_failures
                         (destination, since_ms, last_error, failures, next_attempt_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (destination) DO UPDATE SET since_ms = excluded.since_ms,
                         last_error = excluded.last_error, failures = excluded.failures,
                         next_attempt_ms = excluded.next_attempt_ms",
                    params![
                        destination,
                        f.since_ms,
                        f.last_error,
                        f.failures,
                        f.next_attempt_ms
                    ],
                ),
                None => conn.execute(
                    "DELETE FROM destination_failures WHERE destination = ?1",
                    params![destination],
                ),
            }
            .map(drop)
            .map_err(backend("record destination failure"))
        })
        .await
    }

    async fn destination_failures(
        &self,
    ) -> Result<Option<Vec<(String, DestinationFailure)>>, StoreError> {
        // Writes nothing: may go ahead of the check at open.
        self.ahead_of_check(|conn| {
            let err = backend("read destination failures");
            let mut stmt = conn
                .prepare_cached(
                    "SELECT destination, since_ms, last_error, failures, next_attempt_ms
                     FROM destination_failures ORDER BY destination",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        DestinationFailure {
                            since_ms: row.get(1)?,
                            last_error: row.get(2)?,
                            failures: row.get(3)?,
                            next_attempt_ms: row.get(4)?,
                        },
                    ))
                })
                .map_err(&err)?;
            rows.collect::<Result<Vec<_>, _>>().map(Some).map_err(&err)
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

    /// Leases and a batch's completion commit without an fsync of their own; every write
    /// after them (an acknowledged event) is back to `synchronous=FULL`.
    #[tokio::test]
    async fn writes_without_an_fsync_leave_the_connection_syncing_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("a.db")).unwrap();
        let synchronous = |store: &SqliteStore| -> i64 {
            lock(&store.conn)
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(synchronous(&store), 2, "FULL");
        store.append_events(vec![event("e0", 0)]).await.unwrap();
        store.acquire_lease("l", "me", 1_000).await.unwrap();
        assert_eq!(synchronous(&store), 2);
        store.begin_batch(&batch(1, 1)).await.unwrap();
        store.complete_batch("d", 1).await.unwrap();
        assert_eq!(synchronous(&store), 2);
        // A failing one too.
        assert!(store.complete_batch("d", 1).await.is_err());
        store.release_lease("l", "me").await.unwrap();
        assert_eq!(synchronous(&store), 2);
        assert_eq!(store.cursor("d").await.unwrap(), 1);
    }

    /// Writes 5,000 events, closes the store, and overwrites the first 4 KiB of the page at
    /// the middle of the file (of every page from the middle to three quarters with `wide`,
    /// so that the table and its index are both hit).
    async fn damaged_store(dir: &Path, wide: bool) -> PathBuf {
        let path = dir.join("a.db");
        let store = SqliteStore::open(&path).unwrap();
        let events: Vec<_> = (0..5_000).map(|i| event(&format!("e{i}"), i)).collect();
        store.append_events(events).await.unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        let page = 16_384;
        let middle = bytes.len() / 2 / page * page;
        let pages = if wide {
            // Past the tables' root pages (the first 14), which opening the store reads.
            (bytes.len() / 2 / page..bytes.len() * 3 / 4 / page).collect()
        } else {
            vec![middle / page]
        };
        let mut damaged = bytes;
        for p in pages {
            damaged[p * page..p * page + 4096].fill(0x5a);
        }
        std::fs::write(&path, damaged).unwrap();
        path
    }

    /// Begins that run at once are recorded together; each still gets its own outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_begins_each_get_their_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
        let of = |d: usize, first, last| Batch {
            destination: format!("d{d}"),
            ..batch(first, last)
        };
        // d7 has a pending batch; d8's cursor is past the batch it will be offered.
        store.begin_batch(&of(7, 5, 6)).await.unwrap();
        store.begin_batch(&of(8, 1, 20)).await.unwrap();
        store.complete_batch("d8", 1).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for d in 0..40 {
            let store = Arc::clone(&store);
            tasks.spawn(async move { (d, store.begin_batch(&of(d, 1, 10)).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (d, outcome) = joined.unwrap();
            let pending = store.pending_batch(&format!("d{d}")).await.unwrap();
            match d {
                7 => {
                    assert!(
                        matches!(&outcome, Err(StoreError::Conflict { message, .. }) if message.contains("pending batch starting at 5")),
                        "{outcome:?}"
                    );
                    assert_eq!(pending.map(|b| b.first_seq), Some(5));
                }
                8 => {
                    assert!(
                        matches!(&outcome, Err(StoreError::Conflict { message, .. }) if message.contains("cursor 20")),
                        "{outcome:?}"
                    );
                    assert_eq!(pending, None);
                }
                _ => {
                    outcome.unwrap();
                    assert_eq!(pending.map(|b| (b.first_seq, b.last_seq)), Some((1, 10)));
                }
            }
        }
    }

    /// Counting every event of a large store takes seconds; appends must not wait for it,
    /// nor counts for a long write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_and_appends_do_not_wait_for_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("a.db")).unwrap();
        store.append_events(vec![event("e0", 0)]).await.unwrap();
        assert_eq!(store.stats().await.unwrap().events, 1);
        let soon = Duration::from_secs(10);
        // A count in progress holds the counting connection.
        let counting = hold(Arc::clone(&store.counting));
        let appended = tokio::time::timeout(soon, store.append_events(vec![event("e1", 1)]))
            .await
            .expect("an append waited for a count");
        appended.unwrap();
        drop(counting);
        // A write in progress holds the writer's connection.
        let writing = hold(Arc::clone(&store.conn));
        let stats = tokio::time::timeout(soon, store.stats())
            .await
            .expect("a count waited for a write");
        assert_eq!(stats.unwrap().events, 2);
        let backlog = tokio::time::timeout(soon, store.count_after(1)).await;
        assert_eq!(backlog.expect("a count waited for a write").unwrap(), 1);
        drop(writing);
    }

    /// Holds `mutex` on a thread of its own until the returned sender is dropped.
    fn hold<T: Send + 'static>(mutex: Arc<Mutex<T>>) -> std::sync::mpsc::Sender<()> {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, holding) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _guard = lock(&mutex);
            held.send(()).unwrap();
            let _ = released.recv();
        });
        holding.recv().unwrap();
        release
    }

    #[tokio::test]
    async fn writes_wait_for_the_check_at_open_and_an_exports_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = SqliteStore::open(&path).unwrap();
        let events = (0..10).map(|i| event(&format!("e{i}"), i)).collect();
        store.append_events(events).await.unwrap();
        drop(store);
        let (store, release) = SqliteStore::open_with_check_held(&path).unwrap();
        let store = Arc::new(store);
        assert!(store.holds_writes());
        let soon = Duration::from_secs(10);
        let stats = tokio::time::timeout(soon, store.stats())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.last_seq, 10);
        let last_seq = tokio::time::timeout(soon, store.last_seq()).await.unwrap();
        assert_eq!(last_seq.unwrap(), 10);
        let cursor = tokio::time::timeout(soon, store.cursor("d")).await.unwrap();
        assert_eq!(cursor.unwrap(), 0);
        let page = tokio::time::timeout(soon, store.read_page_for_export(None, 0, 10, 100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.len(), 10);
        let writer = Arc::clone(&store);
        let mut lease = tokio::spawn(async move { writer.acquire_lease("l", "me", 60_000).await });
        let waited = tokio::time::timeout(Duration::from_millis(300), &mut lease).await;
        assert!(waited.is_err(), "a write went ahead of the check");
        drop(release);
        let taken = tokio::time::timeout(soon, lease).await.unwrap().unwrap();
        assert!(matches!(taken.unwrap(), LeaseOutcome::Acquired { .. }));
        assert!(!store.holds_writes());
        assert_eq!(store.corruption(), None);
    }

    #[tokio::test]
    async fn damage_found_at_open_refuses_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = damaged_store(dir.path(), false).await;
        let store = SqliteStore::open(&path).unwrap();
        store.checked().await;
        assert!(store.corruption().is_some());
        let refused = |r: Result<(), StoreError>| match r {
            Err(StoreError::Corrupted { store, .. }) => assert!(store.ends_with("a.db")),
            other => panic!("{other:?}"),
        };
        refused(store.append_events(vec![event("new", 1)]).await.map(drop));
        refused(store.begin_batch(&batch(1, 10)).await);
        refused(store.gc(&["d".into()]).await.map(drop));
        refused(store.check_writable().await);
    }

    #[tokio::test]
    async fn damage_met_by_a_read_refuses_the_writes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = damaged_store(dir.path(), true).await;
        // Without the check at open, the damage is found by the first read that meets it.
        let store = SqliteStore::open_with(&path, IntegrityCheck::Off).unwrap();
        assert_eq!(store.corruption(), None);
        let read = store.read_after(0, u64::MAX, 10_000).await;
        assert!(
            matches!(read, Err(StoreError::Corrupted { .. })),
            "{:?}",
            read.map(|r| r.len())
        );
        assert!(store.corruption().is_some());
        let write = store.append_events(vec![event("new", 1)]).await;
        assert!(
            matches!(write, Err(StoreError::Corrupted { .. })),
            "{write:?}"
        );
    }

    /// GC deletes in steps, each a transaction of its own: a reader sees the count go down
    /// while it runs, and every id it deleted is still known as a duplicate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gc_deletes_in_steps_that_others_see_and_remembers_every_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("a.db")).unwrap();
        store.gc_step_events = 400;
        let n = 20_000;
        let events = (0..n).map(|i| event(&format!("e{i}"), i as i64)).collect();
        let appended = store.append_events(events).await.unwrap();
        let (first, last) = (appended[0].seq, appended[n - 1].seq);
        store.begin_batch(&batch(first, last)).await.unwrap();
        store.complete_batch("d", first).await.unwrap();
        let gc = tokio::spawn({
            let store = store.clone();
            async move { store.gc(&["d".into()]).await }
        });
        let mut seen = std::collections::BTreeSet::new();
        while !gc.is_finished() {
            seen.insert(store.stats().await.unwrap().events);
        }
        assert_eq!(gc.await.unwrap().unwrap(), n as u64);
        assert!(
            seen.iter().any(|&count| count > 0 && count < n as u64),
            "no step of GC was seen: counts {seen:?}"
        );
        assert_eq!(store.stats().await.unwrap().events, 0);
        auditsync_store::testkit::assert_collected_ids_are_remembered(
            &store,
            &[0, 399, 400, 12_345, n - 1],
        )
        .await;
    }

    /// The store's GC checks, with steps so small that every GC takes several (tenant
    /// bounds included, where the events a step skips lie between those it deletes).
    #[tokio::test]
    async fn gc_in_steps_of_one_or_two_events_passes_the_gc_checks() {
        use auditsync_store::testkit;
        for step_events in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let fresh = |name: &str| -> Arc<dyn Store> {
                let mut store = SqliteStore::open(dir.path().join(name)).unwrap();
                store.gc_step_events = step_events;
                Arc::new(store)
            };
            testkit::batches_move_cursors_and_gc_keeps_what_a_destination_lacks(fresh("a.db"))
                .await;
            testkit::an_id_replayed_after_gc_is_still_a_duplicate(fresh("b.db")).await;
            testkit::gc_keeps_what_a_tenant_destination_lacks(fresh("c.db")).await;
        }
    }

    #[tokio::test]
    async fn remembered_ids_are_bounded_by_the_window_and_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let collect = |store: &SqliteStore, ids: std::ops::Range<usize>| {
            let store = store.clone();
            async move {
                let events: Vec<_> = ids.map(|i| event(&format!("e{i}"), i as i64)).collect();
                let appended = store.append_events(events).await.unwrap();
                let (first, last) = (appended[0].seq, appended.last().unwrap().seq);
                store.begin_batch(&batch(first, last)).await.unwrap();
                store.complete_batch("d", first).await.unwrap();
                store.gc(&["d".into()]).await.unwrap();
            }
        };
        let replayed = |store: &SqliteStore, i: usize| {
            let store = store.clone();
            async move {
                let a = store
                    .append_events(vec![event(&format!("e{i}"), i as i64)])
                    .await
                    .unwrap();
                a[0].duplicate
            }
        };
        // A cap of 3: the last three collected are remembered, the older ones forgotten.
        let capped = SqliteStore::open(dir.path().join("capped.db"))
            .unwrap()
            .with_id_retention(IdRetention {
                window_ms: 86_400_000,
                max_ids: 3,
            });
        collect(&capped, 0..5).await;
        assert!(!replayed(&capped, 0).await && !replayed(&capped, 1).await);
        assert!(replayed(&capped, 2).await && replayed(&capped, 4).await);
        // A zero window remembers nothing.
        let off = SqliteStore::open(dir.path().join("off.db"))
            .unwrap()
            .with_id_retention(IdRetention {
                window_ms: 0,
                max_ids: 10,
            });
        collect(&off, 0..2).await;
        assert!(!replayed(&off, 1).await);
    }

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
