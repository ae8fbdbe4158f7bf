//! What the SQLite store's integration tests share: events to load, raw reads of the file.

use std::path::Path;
use std::time::Duration;

use auditsync_store::testkit::event;
use auditsync_store::{BulkItem, BulkOutcome, EncodedEvent, Store, StoreError};
use auditsync_store_sqlite::SqliteStore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events with bodies of about 1 KiB, so that a few thousand span several steps; every
/// third belongs to tenant `t1`.
pub fn chunk(ids: std::ops::Range<usize>) -> Vec<EncodedEvent> {
    ids.map(|i| {
        let mut e = event(&format!("e{i}"), i as i64);
        e.payload = Some("x".repeat(1000).into());
        e.organization = (i % 3 == 0).then(|| "t1".to_string());
        EncodedEvent::new(&e).unwrap()
    })
    .collect()
}

pub fn raw_count(path: &Path, sql: &str) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Waits until the load has committed at least one step (seen by a raw reader).
pub async fn wait_for_a_committed_step(path: &Path, above: u64) {
    for _ in 0..200 {
        if raw_count(path, "SELECT count(*) FROM events") > above {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no step of the bulk load was committed within 10 s");
}

/// Opens a bulk load on `store` and sends it the [`chunk`]s of `ids`, 500 events each; the
/// load then waits for more, a commit, or its sender to drop (abandoned).
pub async fn open_load(
    store: &SqliteStore,
    ids: std::ops::Range<usize>,
) -> (
    mpsc::Sender<BulkItem>,
    JoinHandle<Result<BulkOutcome, StoreError>>,
) {
    let (tx, rx) = mpsc::channel(2);
    let load = tokio::spawn({
        let store = store.clone();
        async move { store.append_bulk(rx).await }
    });
    for start in ids.clone().step_by(500) {
        let chunk = chunk(start..(start + 500).min(ids.end));
        tx.send(BulkItem::Events(chunk)).await.unwrap();
    }
    (tx, load)
}
