//! A bulk append commits in steps, yet stays all or nothing: checked from a second store
//! on the same file (as `auditsync run` sees a CLI `ingest`), and against a load whose
//! process died, on real SQLite files.

mod support;

use std::time::Duration;

use auditsync_store::testkit::event;
use auditsync_store::{holder, BulkItem, EncodedEvent, Store, StoreError};
use auditsync_store_sqlite::SqliteStore;
use support::{chunk, open_load, raw_count, wait_for_a_committed_step};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_is_invisible_until_its_last_step_and_writers_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let loader = SqliteStore::open(&path).unwrap();
    let other = SqliteStore::open(&path).unwrap();
    other.append(chunk(1000..1001)).await.unwrap();

    // 8 MiB: several steps.
    let (tx, bulk) = open_load(&loader, 0..8000).await;
    wait_for_a_committed_step(&path, 1).await;

    let stats = other.stats().await.unwrap();
    assert_eq!((stats.events, stats.last_seq), (1, 1), "{stats:?}");
    assert_eq!(
        other.last_seq().await.unwrap(),
        1,
        "an export stops below the load"
    );
    assert_eq!(other.read_after(0, u64::MAX, 100).await.unwrap().len(), 1);
    assert_eq!(other.count_after(0).await.unwrap(), 1);
    assert_eq!(
        other.gc(&["never-exported".to_string()]).await.unwrap(),
        0,
        "GC never reaches into a load"
    );

    let mut during = tokio::spawn({
        let other = other.clone();
        async move { other.append(chunk(9000..9001)).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut during)
            .await
            .is_err(),
        "a writer waits while the load is open"
    );
    tx.send(BulkItem::Commit).await.unwrap();
    let outcome = bulk.await.unwrap().unwrap();
    assert_eq!(
        (outcome.stored, outcome.duplicates),
        (7999, 1),
        "e1000 was there"
    );
    let (lo, hi) = outcome.seqs.unwrap();
    assert!(lo > 1, "{lo}");
    let appended = during.await.unwrap().unwrap();
    assert!(appended[0].seq > hi, "{} after {hi}", appended[0].seq);
    let stats = other.stats().await.unwrap();
    assert_eq!(stats.events, 8001);
    assert_eq!(raw_count(&path, "SELECT count(*) FROM bulk_loads"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_load_deletes_the_steps_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path).unwrap();
    store.append(chunk(0..1)).await.unwrap();
    let (tx, bulk) = open_load(&store, 1..6001).await;
    wait_for_a_committed_step(&path, 1).await;
    drop(tx);
    assert!(matches!(bulk.await.unwrap(), Err(StoreError::Abandoned)));
    assert_eq!(raw_count(&path, "SELECT count(*) FROM events"), 1);
    assert_eq!(raw_count(&path, "SELECT count(*) FROM bulk_loads"), 0);
    // Writable, and the ids of the undone load are free again.
    let again = store.append(chunk(1..2)).await.unwrap();
    assert!(!again[0].duplicate);
}

#[tokio::test]
async fn the_load_of_a_process_that_died_is_undone_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .append(vec![
            EncodedEvent::new(&event("kept-1", 1)).unwrap(),
            EncodedEvent::new(&event("kept-2", 2)).unwrap(),
        ])
        .await
        .unwrap();
    drop(store);
    // What a CLI ingest killed after two steps leaves: its load, and the events above it.
    let dead = format!("pid 4194305 on {} #1", holder::host_name());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO bulk_loads (after_seq, holder, started_ms) VALUES (2, ?1, 0)",
            [&dead],
        )
        .unwrap();
        for i in 0..3 {
            conn.execute(
                "INSERT INTO events (id, time_ms, tenant, body) VALUES (?1, 0, NULL, '{}')",
                [format!("half-{i}")],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let ids: Vec<String> = store
        .read_after(0, u64::MAX, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(ids, ["kept-1", "kept-2"]);
    assert_eq!(raw_count(&path, "SELECT count(*) FROM events"), 2);
    assert_eq!(raw_count(&path, "SELECT count(*) FROM bulk_loads"), 0);
    let appended = store
        .append(vec![EncodedEvent::new(&event("half-0", 3)).unwrap()])
        .await
        .unwrap();
    assert!(
        !appended[0].duplicate,
        "the undone load's ids are free: {appended:?}"
    );
}
