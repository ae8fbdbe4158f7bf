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
