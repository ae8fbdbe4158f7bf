//! A store's counts start from those it took before, and still agree with counting every
//! event readers may see, on real SQLite files.

mod support;

use std::path::Path;

use auditsync_store::testkit::{batch, event};
use auditsync_store::{BulkItem, DestinationBacklog, Store, StoreError};
use auditsync_store_sqlite::SqliteStore;
use support::{open_load, raw_count, wait_for_a_committed_step};

/// The SQL condition on `events` of those readers may see after `after` (of `tenant` alone,
/// if given), written here without the store: none above an open bulk load.
fn visible(tenant: Option<&str>, after: u64) -> String {
    let of_tenant = tenant.map_or(String::new(), |t| format!("AND tenant = '{t}'"));
    format!(
        "seq > {after} {of_tenant}
         AND seq <= (SELECT COALESCE(MIN(after_seq), 9223372036854775807) FROM bulk_loads)"
    )
}

/// Events readers may see after `after` (of `tenant` alone, if given), counted without
/// the store.
fn every(path: &Path, tenant: Option<&str>, after: u64) -> u64 {
    let visible = visible(tenant, after);
    raw_count(
        path,
        &format!("SELECT count(*) FROM events WHERE {visible}"),
    )
}

/// Asserts that the store's backlog after each of `afters`, for all events and for each
/// tenant's, and its count of events held, are what counting every event gives.
async fn agree(store: &SqliteStore, path: &Path, afters: &[u64], when: &str) {
    for &after in afters {
        let remembered = store.count_after(after).await.unwrap();
        assert_eq!(
            remembered,
            every(path, None, after),
            "{when}: events after {after}"
        );
        for tenant in TENANTS {
            let remembered = store.count_tenant_after(tenant, after).await.unwrap();
            assert_eq!(
                remembered,
                every(path, Some(tenant), after),
                "{when}: events of {tenant} after {after}"
            );
        }
    }
    let held = store.stats().await.unwrap().events;
    assert_eq!(held, every(path, None, 0), "{when}: events held");
    // Where destination `d` stands, in one trip, read here without the store: also while a
    // bulk load holds the writer's connection, which the store's other reads wait for.
    let cursor = raw_count(
        path,
        "SELECT COALESCE((SELECT seq FROM cursors WHERE destination = 'd'), 0)",
    );
    for tenant in [None, Some(TENANTS[0]), Some(TENANTS[1])] {
        let expected = DestinationBacklog {
            cursor,
            events: every(path, tenant, cursor),
            oldest_ms: first_time(path, tenant, cursor),
        };
        let backlog = store.backlog_of("d", tenant).await.unwrap();
        assert_eq!(backlog, expected, "{when}: where d stands ({tenant:?})");
    }
}

/// The time of the first event readers may see after `after` (of `tenant` alone, if given),
/// from its id: the test's event `e{i}` happened at `i`.
fn first_time(path: &Path, tenant: Option<&str>, after: u64) -> Option<i64> {
    let visible = visible(tenant, after);
    let conn = rusqlite::Connection::open(path).unwrap();
    let id: Option<String> = conn
        .query_row(
            &format!("SELECT id FROM events WHERE {visible} ORDER BY seq LIMIT 1"),
            [],
            |r| r.get(0),
        )
        .ok();
    id.map(|id| id.trim_start_matches('e').parse().unwrap())
}

/// The tenants of the test's events: `t1` and `t2` alternate in appends, and every third
/// event of a bulk load is `t1`'s.
const TENANTS: [&str; 2] = ["t1", "t2"];

/// Through appends, ignored duplicates, a cursor's moves, GC by another process on the same
/// file past a cursor it was not given (a destination it no longer waits for), and bulk
/// loads: open, committed and abandoned; for all events and for each tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_counts_agree_with_counting_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path).unwrap();
    let other_process = SqliteStore::open(&path).unwrap();
    let events = |ids: std::ops::Range<usize>| {
        ids.map(|i| {
            let mut e = event(&format!("e{i}"), i as i64);
            e.organization = Some(TENANTS[i % 2].to_string());
            e
        })
        .collect::<Vec<_>>()
    };
    store.append_events(events(0..1_000)).await.unwrap();
    agree(&store, &path, &[0, 100, 700], "first append").await;
    // Five ids again (ignored) and five new ones.
    store.append_events(events(995..1_005)).await.unwrap();
    agree(&store, &path, &[0, 100, 700], "duplicates").await;
    store.begin_batch(&batch(1, 600)).await.unwrap();
    store.complete_batch("d", 1).await.unwrap();
    agree(&store, &path, &[0, 100, 600], "an export").await;
    // Another process collects for `d` alone: past the cursor 100 of a destination it was
    // not given.
    assert_eq!(other_process.gc(&["d".into()]).await.unwrap(), 600);
    agree(&store, &path, &[0, 100, 600], "GC by another process").await;

    // A bulk load: invisible while open, all of it once committed.
    let (tx, bulk) = open_load(&store, 10_000..16_000).await;
    wait_for_a_committed_step(&path, 405).await;
    agree(&store, &path, &[0, 100, 600], "an open bulk load").await;
    tx.send(BulkItem::Commit).await.unwrap();
    assert_eq!(bulk.await.unwrap().unwrap().stored, 6_000);
    agree(
        &store,
        &path,
        &[0, 100, 600, 1_200],
        "a committed bulk load",
    )
    .await;

    // An abandoned one, after a step of it was committed.
    let (tx, bulk) = open_load(&store, 20_000..26_000).await;
    wait_for_a_committed_step(&path, 6_405).await;
    agree(
        &store,
        &path,
        &[0, 100, 600],
        "a bulk load about to be abandoned",
    )
    .await;
    drop(tx);
    assert!(matches!(bulk.await.unwrap(), Err(StoreError::Abandoned)));
    store.append_events(events(4_000..4_010)).await.unwrap();
    agree(
        &store,
        &path,
        &[0, 100, 600, 1_200],
        "an abandoned bulk load",
    )
    .await;
}
