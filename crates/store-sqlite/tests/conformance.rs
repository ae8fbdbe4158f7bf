//! The store conformance suite on a real SQLite file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use auditsync_store::Store;
use auditsync_store_sqlite::SqliteStore;

#[tokio::test]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    auditsync_store::testkit::run(|| {
        // A subdirectory too: opening creates it.
        let path = dir
            .path()
            .join(format!("s{}/audit.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteStore::open(path).unwrap()) as Arc<dyn Store> }
    })
    .await;
}

/// SQLite keeps destination failures for every process that opens the file (the suite
/// accepts a store that keeps none).
#[tokio::test]
async fn sqlite_keeps_destination_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("a.db")).unwrap();
    assert_eq!(
        store.destination_failures().await.unwrap(),
        Some(Vec::new())
    );
}

#[test]
fn the_registry_opens_sqlite_by_type_and_names_a_bad_option() {
    auditsync_store_sqlite::link();
    assert!(auditsync_store::registry::store_names().contains(&"sqlite"));
    let dir = tempfile::tempdir().unwrap();
    let mut options = serde_json::Map::new();
    options.insert(
        "path".into(),
        dir.path().join("a.db").display().to_string().into(),
    );
    let store = auditsync_store::registry::build_store("sqlite", &options).unwrap();
    assert!(
        store.describe().starts_with("sqlite:"),
        "{}",
        store.describe()
    );
    options.insert("pth".into(), "x".into());
    let err = auditsync_store::registry::build_store("sqlite", &options).unwrap_err();
    assert!(err.to_string().contains("`store.pth`"), "{err}");
    let err = auditsync_store::registry::build_store("nope", &options).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config key `store.type`: unknown store `nope`; known: sqlite"
    );
}

/// A store written before manifests (batches without event times) opens, keeps its batches
/// and records new ones with times.
#[tokio::test]
async fn a_store_from_before_manifests_gains_the_batch_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE batches (
                destination TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                object_key TEXT NOT NULL, events INTEGER NOT NULL, bytes INTEGER NOT NULL,
                sha256 TEXT NOT NULL, created_ms INTEGER NOT NULL, completed_ms INTEGER,
                PRIMARY KEY (destination, first_seq));
             INSERT INTO batches VALUES ('d', 1, 2, 'k1', 2, 10, '00', 1, 5);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let old = store.completed_batches("d", 0, 10).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!((old[0].key.as_str(), old[0].earliest_ms), ("k1", None));
    drop(store);
    // Opening again finds the columns in place.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.completed_batches("d", 0, 10).await.unwrap(), old);
}
