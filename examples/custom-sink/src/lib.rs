//! A third-party sink, written against `auditsync-core` alone: export files become rows of
//! a SQLite table (`objects(key PRIMARY KEY, body)`), in a database file of the user's.
//!
//! It shows the whole contract:
//! - `put` is atomic (one transaction) and create-if-absent (`INSERT OR IGNORE` on the
//!   primary key, reporting [`PutOutcome::AlreadyExists`]);
//! - errors are classified (a busy database is [`ErrorKind::Transient`]);
//! - typed options with `deny_unknown_fields`, parsed by `parse_options`;
//! - registration under the type name `sqlite-table` and the URL scheme
//!   `sqlite-table:///path`, with `auditsync-sink-kit`'s `register_sink!` (which defines
//!   `link()`).
//!
//! `tests/conformance.rs` runs auditsync's conformance suite against it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use auditsync_core::{
    ConfigError, ErrorKind, ObjectKey, ObjectMeta, PutOutcome, Sink, SinkError, SinkOp,
};
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

/// Options of a `{"type": "sqlite-table"}` destination.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The database file (created if missing).
    pub path: PathBuf,
}

/// The sink.
#[derive(Debug)]
pub struct TableSink {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

fn error(op: SinkOp, key: &str, err: rusqlite::Error) -> SinkError {
    let busy = matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let kind = if busy {
        ErrorKind::Transient
    } else {
        ErrorKind::Other
    };
    SinkError::new(op, kind, err.to_string()).with_key(key)
}

impl TableSink {
    /// Opens (or creates) the table in the database at `config.path`.
    pub fn open(config: TableConfig) -> Result<Self, ConfigError> {
        let conn = Connection::open(&config.path)
            .map_err(|e| ConfigError::invalid("path", e.to_string()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, body BLOB NOT NULL);",
        )
        .map_err(|e| ConfigError::invalid("path", e.to_string()))?;
        Ok(Self {
            path: config.path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || work(&conn.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| SinkError::new(SinkOp::Setup, ErrorKind::Other, e.to_string()))?
    }
}

#[async_trait]
impl Sink for TableSink {
    fn describe(&self) -> String {
        format!("sqlite-table:{}", self.path.display())
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<PutOutcome, SinkError> {
        let key = key.to_string();
        self.with_conn(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO objects (key, body) VALUES (?1, ?2)",
                    params![key, body.as_ref()],
                )
                .map_err(|e| error(SinkOp::Put, &key, e))?;
            Ok(if inserted == 1 {
                PutOutcome::Created
            } else {
                PutOutcome::AlreadyExists
            })
        })
        .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, SinkError> {
        let key = key.to_string();
        self.with_conn(move |conn| {
            conn.query_row("SELECT body FROM objects WHERE key = ?1", [&key], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()
            .map_err(|e| error(SinkOp::Get, &key, e))?
            .map(Bytes::from)
            .ok_or_else(|| {
                SinkError::new(SinkOp::Get, ErrorKind::NotFound, "no such object").with_key(&key)
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, SinkError> {
        let prefix = prefix.to_string();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare("SELECT key, length(body) FROM objects WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
                .map_err(|e| error(SinkOp::List, &prefix, e))?;
            let rows = stmt
                .query_map([&prefix], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
                .map_err(|e| error(SinkOp::List, &prefix, e))?;
            let mut out = Vec::new();
            for row in rows {
                let (key, size) = row.map_err(|e| error(SinkOp::List, &prefix, e))?;
                if let Ok(key) = ObjectKey::new(key) {
                    out.push(ObjectMeta { key, size });
                }
            }
            // SQLite's default collation is byte order, as ObjectKey's; sort anyway.
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), SinkError> {
        let key = key.to_string();
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM objects WHERE key = ?1", [&key])
                .map(drop)
                .map_err(|e| error(SinkOp::Delete, &key, e))
        })
        .await
    }
}

// The sink kit registers the factory (type name, typed options, constructor, URL scheme)
// and defines `link()`, which a binary calls to keep this crate linked.
auditsync_sink_kit::register_sink! {
    name: "sqlite-table",
    summary: "example third-party sink: objects as rows of a SQLite table",
    config: TableConfig,
    open: TableSink::open,
    url_schemes: &[auditsync_core::UrlScheme {
        scheme: "sqlite-table",
        query: &[],
        parse: parse_url,
    }],
}

/// `sqlite-table:///path/to/objects.db`: the database file; there is no prefix.
fn parse_url(
    url: &auditsync_core::SinkUrlParts,
) -> Result<auditsync_core::SinkUrlTarget, auditsync_core::SinkUrlError> {
    auditsync_sink_kit::url::local_path(url, "path")
}
