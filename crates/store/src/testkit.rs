//! The store conformance suite: the behaviour the engine relies on, checked against any
//! [`Store`]. Every store crate runs it on its real backend (SQLite on a file, PostgreSQL on
//! a server), and so can a third party's:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     let dir = tempfile::tempdir().unwrap();
//!     let n = std::sync::atomic::AtomicUsize::new(0);
//!     auditsync_store::testkit::run(|| {
//!         let path = dir.path().join(format!("{}.db", n.fetch_add(1, Ordering::Relaxed)));
//!         async move { Arc::new(MyStore::open(path).unwrap()) as Arc<dyn Store> }
//!     })
//!     .await;
//! }
//! ```
//!
//! `fresh` must return an empty store each time it is called. A failed check panics with
//! its name.

use std::future::Future;
use std::sync::Arc;

use auditsync_core::Event;
use tokio::sync::mpsc;

use crate::{
    Appended, Batch, BulkItem, DestinationBacklog, DestinationFailure, EncodedEvent, ExportClaim,
    ExportEvent, ExportStart, LeaseOutcome, ManifestRecord, ScheduleRun, Store, StoreError,
    StoredEvent, Takers,
};

/// Runs every check, each on a fresh store from `fresh`.
pub async fn run<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    ids_are_idempotency_keys_and_seqs_increase(fresh().await).await;
    a_large_append_keeps_its_order_and_finds_each_first_copy(fresh().await).await;
    batches_move_cursors_and_gc_keeps_what_a_destination_lacks(fresh().await).await;
    completed_batches_stay_listed_and_manifests_chain_one_by_one(fresh().await).await;
    a_committed_bulk_append_stores_everything_once(fresh().await).await;
    an_abandoned_bulk_append_stores_nothing(fresh().await).await;
    counts_and_health(fresh().await).await;
    schedule_runs_keep_the_last_of_each(fresh().await).await;
    a_lease_has_one_holder_until_it_expires_or_is_released(fresh().await).await;
    an_id_replayed_after_gc_is_still_a_duplicate(fresh().await).await;
    an_export_read_gives_the_same_events(fresh().await).await;
    a_tenant_read_gives_only_that_tenants_events(fresh().await).await;
    gc_keeps_what_a_tenant_destination_lacks(fresh().await).await;
    an_export_starts_only_with_work_to_do(fresh().await).await;
    destination_failures_are_kept_until_cleared(fresh().await).await;
    an_export_page_gives_the_events_an_export_read_gives(fresh().await).await;
}

/// An event with an id and a time, valid for any store.
pub fn event(id: &str, time: i64) -> Event {
    Event {
        id: id.into(),
        time,
        action: "getUser".into(),
        ..Event::default()
    }
}

/// A batch of destination `d` over `first..=last`, for checks that need one.
pub fn batch(first: u64, last: u64) -> Batch {
    Batch {
        destination: "d".into(),
        first_seq: first,
        last_seq: last,
        key: format!("k{first}"),
        events: last - first + 1,
        bytes: 10,
        sha256: "00".into(),
        created_ms: 1,
        earliest_ms: Some(first as i64),
        latest_ms: Some(last as i64),
    }
}

/// Asserts that each event `e{i}` ([`event`] with that id and time `i`), collected by GC,
/// is a duplicate when appended again: its id was remembered, at a border of GC's steps too.
pub async fn assert_collected_ids_are_remembered(store: &dyn Store, ids: &[usize]) {
    for &i in ids {
        let again = store
            .append_events(vec![event(&format!("e{i}"), i as i64)])
            .await
            .unwrap();
        assert!(again[0].duplicate, "e{i} was forgotten by a step of GC");
    }
}

fn encoded(ids: impl IntoIterator<Item = usize>) -> Vec<EncodedEvent> {
    ids.into_iter()
        .map(|i| EncodedEvent::new(&event(&format!("e{i}"), i as i64)).unwrap())
        .collect()
}

/// One append of 200 events, some ids again: one stored before, one earlier in the same
/// call and far from it, one right after itself, and one three times. New events get
/// increasing sequence numbers in the call's order; each copy gets its first copy's number,
/// and the first copy's body is the one stored.
pub async fn a_large_append_keeps_its_order_and_finds_each_first_copy(store: Arc<dyn Store>) {
    let before = store.append_events(vec![event("old", 1)]).await.unwrap();
    let ids: Vec<String> = (0..200)
        .map(|i| match i {
            7 => "old".to_string(),
            150 => "e3".to_string(),
            41 => "e40".to_string(),
            90 | 180 => "e89".to_string(),
            i => format!("e{i}"),
        })
        .collect();
    let events = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, 1_000 + i as i64))
        .collect();
    let appended = store.append_events(events).await.unwrap();
    assert_eq!(appended.len(), 200);
    let mut first: std::collections::HashMap<&str, u64> = [("old", before[0].seq)].into();
    let mut last_new = before[0].seq;
    for (a, id) in appended.iter().zip(&ids) {
        assert_eq!(a.id, *id);
        match first.get(id.as_str()) {
            Some(&seq) => assert_eq!((a.seq, a.duplicate), (seq, true), "{id}"),
            None => {
                assert!(
                    !a.duplicate && a.seq > last_new,
                    "{id}: {a:?} after {last_new}"
                );
                last_new = a.seq;
                first.insert(id, a.seq);
            }
        }
    }
    let read = store.read_after(0, u64::MAX, 1_000).await.unwrap();
    assert_eq!(read.len(), 196, "old, and 195 new ids");
    let e89 = read.iter().find(|r| r.event.id == "e89").unwrap();
    assert_eq!(e89.event.time, 1_089, "the first copy is stored");
}

/// An id is an idempotency key; sequence numbers increase (gaps allowed); the first copy of
/// an id wins.
pub async fn ids_are_idempotency_keys_and_seqs_increase(store: Arc<dyn Store>) {
    let first = store
        .append_events(vec![event("a", 1), event("b", 2), event("a", 3)])
        .await
        .unwrap();
    assert_eq!(
        first
            .iter()
            .map(|a| (a.seq, a.duplicate))
            .collect::<Vec<_>>(),
        vec![(1, false), (2, false), (1, true)]
    );
    let again = store
        .append_events(vec![event("b", 9), event("c", 4)])
        .await
        .unwrap();
    assert_eq!(
        again[0],
        Appended {
            id: "b".into(),
            seq: 2,
            duplicate: true
        }
    );
    assert!(again[1].seq >= 3, "increasing, gaps allowed");
    let read = store.read_after(0, u64::MAX, 10).await.unwrap();
    assert_eq!(read.len(), 3);
    // the first copy of `b` wins; the replay's different time is not stored
    assert_eq!(read[1].event.time, 2);
    assert_eq!(store.read_after(1, 2, 10).await.unwrap().len(), 1);
}

/// Batches are recorded before their upload, move the cursor when completed, and GC keeps
/// what any destination still lacks.
pub async fn batches_move_cursors_and_gc_keeps_what_a_destination_lacks(store: Arc<dyn Store>) {
    let events = (0..5).map(|i| event(&format!("e{i}"), i)).collect();
    store.append_events(events).await.unwrap();

    store.begin_batch(&batch(1, 3)).await.unwrap();
    // a second pending batch, or one that skips events, is refused
    assert!(store.begin_batch(&batch(4, 5)).await.is_err());
    assert_eq!(store.pending_batch("d").await.unwrap(), Some(batch(1, 3)));
    assert_eq!(store.cursor("d").await.unwrap(), 0);
    store.complete_batch("d", 1).await.unwrap();
    assert_eq!(store.cursor("d").await.unwrap(), 3);
    assert_eq!(store.pending_batch("d").await.unwrap(), None);
    assert!(store.begin_batch(&batch(2, 5)).await.is_err());

    // `other` never exported: nothing can go
    let both = ["d".to_string(), "other".to_string()];
    assert_eq!(store.gc(&both).await.unwrap(), 0);
    assert_eq!(store.gc(&both[..1]).await.unwrap(), 3);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.events, stats.first_seq, stats.last_seq),
        (2, Some(4), 5)
    );
    assert_eq!(store.last_seq().await.unwrap(), 5, "GC keeps the head");
}

/// Completed batches stay listed after GC, in order, without the pending one; manifest heads
/// advance one number at a time per destination.
pub async fn completed_batches_stay_listed_and_manifests_chain_one_by_one(store: Arc<dyn Store>) {
    let events = (0..6).map(|i| event(&format!("e{i}"), i)).collect();
    store.append_events(events).await.unwrap();
    for (first, last) in [(1, 2), (3, 4)] {
        store.begin_batch(&batch(first, last)).await.unwrap();
        store.complete_batch("d", first).await.unwrap();
    }
    store.begin_batch(&batch(5, 6)).await.unwrap();
    assert_eq!(store.seq_of("e1").await.unwrap(), Some(2));
    store.gc(&["d".to_string()]).await.unwrap();
    // Collected, and still found by id (within the id retention); unknown ids are not.
    assert_eq!(store.seq_of("e1").await.unwrap(), Some(2));
    assert_eq!(store.seq_of("e5").await.unwrap(), Some(6));
    assert_eq!(store.seq_of("nope").await.unwrap(), None);
    let listed = store.completed_batches("d", 0, 10).await.unwrap();
    assert_eq!(listed, vec![batch(1, 2), batch(3, 4)]);
    assert_eq!(
        store.completed_batches("d", 2, 10).await.unwrap(),
        vec![batch(3, 4)]
    );
    assert_eq!(
        store.completed_batches("d", 0, 1).await.unwrap(),
        vec![batch(1, 2)]
    );
    assert!(store
        .completed_batches("other", 0, 10)
        .await
        .unwrap()
        .is_empty());

    let record = |number: u64| ManifestRecord {
        destination: "d".into(),
        number,
        key: format!("m{number}"),
        sha256: format!("{number:064x}"),
        last_seq: number * 2,
        created_ms: number as i64,
    };
    assert_eq!(store.manifest_head("d").await.unwrap(), None);
    assert!(matches!(
        store.record_manifest(&record(2)).await,
        Err(StoreError::Conflict { .. })
    ));
    store.record_manifest(&record(1)).await.unwrap();
    assert!(store.record_manifest(&record(1)).await.is_err());
    store.record_manifest(&record(2)).await.unwrap();
    assert_eq!(store.manifest_head("d").await.unwrap(), Some(record(2)));
    assert_eq!(store.manifest_head("other").await.unwrap(), None);
}

/// A bulk append in several chunks commits them together, in input order, skipping ids
/// already stored and ids repeated across chunks.
pub async fn a_committed_bulk_append_stores_everything_once(store: Arc<dyn Store>) {
    store.append(encoded([0, 1])).await.unwrap();
    let (tx, rx) = mpsc::channel(1);
    let bulk = {
        let store = store.clone();
        tokio::spawn(async move { store.append_bulk(rx).await })
    };
    tx.send(BulkItem::Events(encoded(1..1000))).await.unwrap();
    tx.send(BulkItem::Events(encoded(999..2000))).await.unwrap();
    tx.send(BulkItem::Commit).await.unwrap();
    let outcome = bulk.await.unwrap().unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (1998, 2));
    let (lo, hi) = outcome.seqs.expect("something was stored");
    assert!(lo >= 3 && hi >= lo + 1997, "{lo}..={hi}");
    let read = store.read_after(0, u64::MAX, 5000).await.unwrap();
    let ids: Vec<String> = read.into_iter().map(|e| e.event.id).collect();
    let expected: Vec<String> = (0..2000).map(|i| format!("e{i}")).collect();
    assert_eq!(ids, expected, "each id once, in input order");
}

/// A bulk append whose input stops before its commit stores nothing, not even the chunks
/// that arrived, and leaves the store writable.
pub async fn an_abandoned_bulk_append_stores_nothing(store: Arc<dyn Store>) {
    let before = store.stats().await.unwrap();
    let (tx, rx) = mpsc::channel(1);
    let bulk = {
        let store = store.clone();
        tokio::spawn(async move { store.append_bulk(rx).await })
    };
    tx.send(BulkItem::Events(encoded(0..500))).await.unwrap();
    tx.send(BulkItem::Events(encoded(500..1000))).await.unwrap();
    drop(tx);
    let result = bulk.await.unwrap();
    assert!(
        matches!(result, Err(StoreError::Abandoned)),
        "abandoned bulk append: {result:?}"
    );
    assert_eq!(store.stats().await.unwrap(), before, "nothing stored");
    let appended = store.append(encoded([7])).await.unwrap();
    assert!(
        !appended[0].duplicate,
        "e7 was not kept by the abandoned append"
    );
    store.check_writable().await.unwrap();
}

/// Counts, backlogs, the write check and the description.
pub async fn counts_and_health(store: Arc<dyn Store>) {
    assert_eq!(store.stats().await.unwrap().events, 0);
    assert_eq!(store.last_seq().await.unwrap(), 0);
    store.append(encoded(0..10)).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.events, 10);
    assert_eq!(store.last_seq().await.unwrap(), stats.last_seq);
    assert!(stats.last_seq >= 10, "{stats:?}");
    assert_eq!(store.count_after(0).await.unwrap(), 10);
    assert_eq!(store.count_after(stats.last_seq).await.unwrap(), 0);
    store.check_writable().await.unwrap();
    assert_eq!(
        store.stats().await.unwrap().events,
        10,
        "the write check stores no event"
    );
    assert!(!store.describe().is_empty());
}

/// A schedule's record is replaced by its next run; records are listed in name order.
pub async fn schedule_runs_keep_the_last_of_each(store: Arc<dyn Store>) {
    assert!(store.schedule_runs().await.unwrap().is_empty());
    let run = |schedule: &str, started_ms: i64, ok: bool| ScheduleRun {
        schedule: schedule.to_string(),
        started_ms,
        finished_ms: started_ms + 250,
        ok,
    };
    store
        .record_schedule_run(&run("gc", 1_000, true))
        .await
        .unwrap();
    store
        .record_schedule_run(&run("export", 2_000, false))
        .await
        .unwrap();
    store
        .record_schedule_run(&run("export", 3_000, true))
        .await
        .unwrap();
    store
        .record_schedule_run(&run("sync:mirror", 4_000, false))
        .await
        .unwrap();
    assert_eq!(
        store.schedule_runs().await.unwrap(),
        vec![
            run("export", 3_000, true),
            run("gc", 1_000, true),
            run("sync:mirror", 4_000, false)
        ]
    );
    assert_eq!(
        store.stats().await.unwrap().events,
        0,
        "a run record is no event"
    );
}

/// One holder at a time; renewal by the holder; release; expiry.
pub async fn a_lease_has_one_holder_until_it_expires_or_is_released(store: Arc<dyn Store>) {
    let held = |o: LeaseOutcome| match o {
        LeaseOutcome::HeldBy { holder, .. } => holder,
        other => panic!("expected the lease to be held by another, got {other:?}"),
    };
    let acquired = |o: LeaseOutcome| assert!(matches!(o, LeaseOutcome::Acquired { .. }), "{o:?}");
    acquired(store.acquire_lease("export:d", "a", 60_000).await.unwrap());
    assert_eq!(
        held(store.acquire_lease("export:d", "b", 60_000).await.unwrap()),
        "a"
    );
    // Another lease name is independent; the holder renews its own.
    acquired(store.acquire_lease("export:e", "b", 60_000).await.unwrap());
    acquired(store.acquire_lease("export:d", "a", 60_000).await.unwrap());
    // Releasing by someone else changes nothing; by the holder, frees it.
    store.release_lease("export:d", "b").await.unwrap();
    assert_eq!(
        held(store.acquire_lease("export:d", "b", 60_000).await.unwrap()),
        "a"
    );
    store.release_lease("export:d", "a").await.unwrap();
    acquired(store.acquire_lease("export:d", "b", 1).await.unwrap());
    // An expired lease can be taken over.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    acquired(store.acquire_lease("export:d", "c", 60_000).await.unwrap());
    assert_eq!(
        held(store.acquire_lease("export:d", "b", 60_000).await.unwrap()),
        "c"
    );
}

/// With the default [`crate::IdRetention`], an event replayed after GC deleted its first
/// copy is a duplicate, in `append` and in `append_bulk`, and gets its old sequence number.
pub async fn an_id_replayed_after_gc_is_still_a_duplicate(store: Arc<dyn Store>) {
    let first = store.append(encoded(0..4)).await.unwrap();
    store
        .begin_batch(&batch(first[0].seq, first[3].seq))
        .await
        .unwrap();
    store.complete_batch("d", first[0].seq).await.unwrap();
    assert_eq!(store.gc(&["d".into()]).await.unwrap(), 4);
    assert_eq!(store.stats().await.unwrap().events, 0);
    let again = store.append(encoded(0..2)).await.unwrap();
    assert!(again.iter().all(|a| a.duplicate), "{again:?}");
    assert_eq!(
        again[1].seq, first[1].seq,
        "the replay names the first copy's seq"
    );
    let (tx, rx) = mpsc::channel(4);
    tx.send(BulkItem::Events(encoded(2..6))).await.unwrap();
    tx.send(BulkItem::Commit).await.unwrap();
    let bulk = store.append_bulk(rx).await.unwrap();
    assert_eq!(
        (bulk.stored, bulk.duplicates),
        (2, 2),
        "ids 2 and 3 were collected, 4 and 5 are new"
    );
    assert_eq!(store.stats().await.unwrap().events, 2);
}

/// [`Store::read_for_export`] gives the events [`Store::read_after`] gives, once a payload
/// and parameters left as text are read.
pub async fn an_export_read_gives_the_same_events(store: Arc<dyn Store>) {
    let mut events: Vec<Event> = (0..4).map(|i| event(&format!("e{i}"), i)).collect();
    events[1].payload = Some(serde_json::json!("[\"_id\",\"teams{_id name}\"]"));
    events[2].payload = Some(serde_json::json!({"query": "q", "n": [1, null]}));
    events[2].params = serde_json::json!({"z": 1, "a": {"b": [true, "c"]}})
        .as_object()
        .unwrap()
        .clone();
    store.append_events(events).await.unwrap();
    let whole = store.read_after(1, u64::MAX, 10).await.unwrap();
    let for_export = store.read_for_export(1, u64::MAX, 10).await.unwrap();
    assert_eq!(whole.len(), 3, "after 1, all the rest");
    let read_back: Vec<StoredEvent> = for_export
        .into_iter()
        .map(|e| {
            if e.payload_text.is_some() {
                assert!(e.event.payload.is_none(), "a payload given twice");
            }
            if e.params_text.is_some() {
                assert!(e.event.params.is_empty(), "parameters given twice");
            }
            StoredEvent {
                seq: e.seq,
                event: e.into_event().unwrap(),
            }
        })
        .collect();
    assert_eq!(read_back, whole);
}

/// Events of tenants `a`, `b`, `c` and of none, interleaved: seq 1..=12, tenant by
/// `i % 4` (a, b, c, none).
async fn append_four_tenants(store: &dyn Store) -> Vec<(u64, Option<String>)> {
    let tenants = [Some("a"), Some("b"), Some("c"), None];
    let events = (0..12)
        .map(|i| Event {
            organization: tenants[i % 4].map(str::to_string),
            ..event(&format!("t{i}"), i as i64)
        })
        .collect();
    let appended = store.append_events(events).await.unwrap();
    appended
        .iter()
        .enumerate()
        .map(|(i, a)| (a.seq, tenants[i % 4].map(str::to_string)))
        .collect()
}

/// Moves `destination`'s cursor to `last` through one completed batch.
async fn move_cursor(store: &dyn Store, destination: &str, first: u64, last: u64) {
    let batch = Batch {
        destination: destination.into(),
        ..batch(first, last)
    };
    store.begin_batch(&batch).await.unwrap();
    store.complete_batch(destination, first).await.unwrap();
}

/// [`Store::read_tenant_for_export`] gives one tenant's events only, in sequence order,
/// within `after`, `up_to` and `limit`.
pub async fn a_tenant_read_gives_only_that_tenants_events(store: Arc<dyn Store>) {
    let stored = append_four_tenants(store.as_ref()).await;
    let of = |tenant: &str| -> Vec<u64> {
        stored
            .iter()
            .filter(|(_, t)| t.as_deref() == Some(tenant))
            .map(|(seq, _)| *seq)
            .collect()
    };
    let seqs = |events: Vec<ExportEvent>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let a = of("a");
    assert_eq!(a.len(), 3);
    let read = store
        .read_tenant_for_export("a", 0, u64::MAX, 100)
        .await
        .unwrap();
    assert!(read
        .iter()
        .all(|e| e.event.organization.as_deref() == Some("a")));
    assert_eq!(seqs(read), a);
    // Paged: after the first, at most one.
    let page = store
        .read_tenant_for_export("a", a[0], u64::MAX, 1)
        .await
        .unwrap();
    assert_eq!(seqs(page), vec![a[1]]);
    // Bounded above.
    let bounded = store
        .read_tenant_for_export("b", 0, of("b")[1], 100)
        .await
        .unwrap();
    assert_eq!(seqs(bounded), of("b")[..2].to_vec());
    assert!(store
        .read_tenant_for_export("nobody", 0, u64::MAX, 100)
        .await
        .unwrap()
        .is_empty());
    // Its backlog after a cursor.
    assert_eq!(store.count_tenant_after("a", 0).await.unwrap(), 3);
    assert_eq!(store.count_tenant_after("a", a[1]).await.unwrap(), 1);
    assert_eq!(store.count_tenant_after("nobody", 0).await.unwrap(), 0);
    // Where a destination stands, of a tenant's events or all: one past the first event
    // (`t0`, of `a`), and one that has exported nothing.
    move_cursor(store.as_ref(), "moved", 1, a[0]).await;
    let time_of = |seq: u64| (stored.iter().position(|(s, _)| *s == seq).unwrap()) as i64;
    for (destination, tenant, cursor, events, oldest_ms) in [
        ("moved", Some("a"), a[0], 2, Some(time_of(a[1]))),
        ("moved", None, a[0], 11, Some(time_of(stored[1].0))),
        ("fresh", Some("nobody"), 0, 0, None),
    ] {
        let expected = DestinationBacklog {
            cursor,
            events,
            oldest_ms,
        };
        let backlog = store.backlog_of(destination, tenant).await.unwrap();
        assert_eq!(backlog, expected, "{destination} ({tenant:?})");
    }
}

/// GC with tenant destinations deletes an event once every destination that takes it (its
/// tenant's and the global ones) has it, and keeps events no destination takes.
pub async fn gc_keeps_what_a_tenant_destination_lacks(store: Arc<dyn Store>) {
    let stored = append_four_tenants(store.as_ref()).await;
    let last = stored.last().unwrap().0;
    let held = |store: Arc<dyn Store>| async move {
        store
            .read_after(0, u64::MAX, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.event.organization))
            .collect::<Vec<_>>()
    };
    let mut takers = Takers::default();
    takers.by_tenant.insert("a".into(), vec!["da".into()]);
    takers.by_tenant.insert("b".into(), vec!["db".into()]);
    let (first_a, last_a) = (stored[0].0, stored[8].0);
    let (first_b, last_b) = (stored[1].0, stored[9].0);

    // Without a global destination: only tenant events their destinations have go.
    move_cursor(store.as_ref(), "db", first_b, last_b).await;
    assert_eq!(store.gc_takers(&takers).await.unwrap(), 3, "b's three");
    let left = held(store.clone()).await;
    assert_eq!(left.len(), 9);
    assert!(left.iter().all(|(_, t)| t.as_deref() != Some("b")));

    // With one: it must have them too, and it alone decides for c and for no tenant.
    takers.all = vec!["g".into()];
    assert_eq!(store.gc_takers(&takers).await.unwrap(), 0, "g has nothing");
    move_cursor(store.as_ref(), "g", 1, stored[5].0).await;
    // seq of stored[2] (c) and stored[3] (none) are at or below g's cursor; a's are not
    // (da has none of them).
    assert_eq!(store.gc_takers(&takers).await.unwrap(), 2);
    move_cursor(store.as_ref(), "da", first_a, last_a).await;
    move_cursor(store.as_ref(), "g", stored[5].0 + 1, last).await;
    assert_eq!(store.gc_takers(&takers).await.unwrap(), 7, "the rest");
    assert!(held(store.clone()).await.is_empty());
    // The collected ids are remembered as with `gc`.
    let again = store
        .append_events(vec![event("t0", 0), event("t1", 1)])
        .await
        .unwrap();
    assert!(again.iter().all(|a| a.duplicate), "{again:?}");
}

/// [`Store::start_export`] takes the lease only when the destination has work up to
/// `up_to`: a pending batch, or an event it takes after its cursor. An idle destination
/// leaves the lease free; a lease held by another is reported, work or not.
pub async fn an_export_starts_only_with_work_to_do(store: Arc<dyn Store>) {
    let stored = append_four_tenants(store.as_ref()).await;
    let last = stored.last().unwrap().0;
    let a: Vec<u64> = stored
        .iter()
        .filter(|(_, t)| t.as_deref() == Some("a"))
        .map(|(seq, _)| *seq)
        .collect();
    let claim = ExportClaim {
        destination: "da",
        tenant: Some("a"),
        up_to: last,
        lease: "export:da",
        holder: "p1",
        ttl_ms: 60_000,
    };
    let lease_is_free = |store: Arc<dyn Store>| async move {
        let taken = store
            .acquire_lease("export:da", "p3", 60_000)
            .await
            .unwrap();
        store.release_lease("export:da", "p3").await.unwrap();
        matches!(taken, LeaseOutcome::Acquired { .. })
    };
    let start = |claim: ExportClaim<'static>| {
        let store = store.clone();
        async move { store.start_export(&claim).await.unwrap() }
    };

    // a's three events wait: started at cursor 0, under the lease, which another cannot take.
    let started = ExportStart::Started {
        pending: None,
        cursor: 0,
    };
    assert_eq!(start(claim).await, started, "tenant a's destination");
    match start(ExportClaim {
        holder: "p2",
        ..claim
    })
    .await
    {
        ExportStart::HeldBy { holder, .. } => assert_eq!(holder, "p1"),
        other => panic!("expected the lease to be held by p1, got {other:?}"),
    }
    store.release_lease("export:da", "p1").await.unwrap();

    // Nothing of a's up to just before its first event, or of a tenant without events:
    // idle, and the lease is left free.
    let before_a = ExportClaim {
        up_to: a[0] - 1,
        ..claim
    };
    assert_eq!(start(before_a).await, ExportStart::Idle);
    let nobody = ExportClaim {
        tenant: Some("nobody"),
        ..claim
    };
    assert_eq!(start(nobody).await, ExportStart::Idle);
    assert!(lease_is_free(store.clone()).await);
    // A global destination with events waits; at the head it is idle.
    let global = ExportClaim {
        tenant: None,
        ..claim
    };
    assert_eq!(start(global).await, started, "a global destination");
    store.release_lease("export:da", "p1").await.unwrap();

    // A pending batch is work even when no event follows it.
    let pending = Batch {
        destination: "da".into(),
        ..batch(a[0], a[2])
    };
    store.begin_batch(&pending).await.unwrap();
    assert_eq!(
        start(claim).await,
        ExportStart::Started {
            pending: Some(pending.clone()),
            cursor: 0
        }
    );
    store.release_lease("export:da", "p1").await.unwrap();
    // Completed, the cursor is past all of a's events: idle, though other tenants' follow.
    store.complete_batch("da", a[0]).await.unwrap();
    assert_eq!(start(claim).await, ExportStart::Idle, "a's events all out");
    assert!(lease_is_free(store.clone()).await);
    let global_at_head = ExportClaim {
        tenant: None,
        up_to: a[2],
        ..claim
    };
    assert_eq!(start(global_at_head).await, ExportStart::Idle);

    // A lease held by another is reported even when there is nothing to do.
    assert!(matches!(
        store
            .acquire_lease("export:da", "p2", 60_000)
            .await
            .unwrap(),
        LeaseOutcome::Acquired { .. }
    ));
    assert!(matches!(start(claim).await, ExportStart::HeldBy { .. }));
}

/// A destination's failure, recorded by one process, is read back by any (in name order),
/// replaced by the next record, and gone once cleared. A store that keeps no such records
/// ([`Store::destination_failures`] answers `None`) still accepts them.
pub async fn destination_failures_are_kept_until_cleared(store: Arc<dyn Store>) {
    let failure = |since_ms: i64, failures: u32, why: &str| DestinationFailure {
        since_ms,
        last_error: why.into(),
        failures,
        next_attempt_ms: since_ms + 10_000,
    };
    let Some(none) = store.destination_failures().await.unwrap() else {
        store
            .record_destination_failure("d", Some(&failure(1, 1, "x")))
            .await
            .unwrap();
        assert_eq!(store.destination_failures().await.unwrap(), None);
        return;
    };
    assert!(none.is_empty(), "a fresh store has no failing destination");
    let bucket_gone = failure(1_000, 1, "NoSuchBucket: «acme» was deleted");
    store
        .record_destination_failure("s3@b", Some(&bucket_gone))
        .await
        .unwrap();
    store
        .record_destination_failure("s3@a", Some(&failure(2_000, 1, "timed out")))
        .await
        .unwrap();
    let again = failure(1_000, 2, "still NoSuchBucket");
    store
        .record_destination_failure("s3@b", Some(&again))
        .await
        .unwrap();
    assert_eq!(
        store.destination_failures().await.unwrap(),
        Some(vec![
            ("s3@a".to_string(), failure(2_000, 1, "timed out")),
            ("s3@b".to_string(), again),
        ]),
        "in name order, the later record of s3@b in place of the first"
    );
    store
        .record_destination_failure("s3@a", None)
        .await
        .unwrap();
    store
        .record_destination_failure("never-failed", None)
        .await
        .unwrap();
    let left = store.destination_failures().await.unwrap().unwrap();
    assert_eq!(
        left.iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        ["s3@b"],
        "only the cleared one is gone"
    );
}

/// [`Store::read_page_for_export`] gives, once decoded, the events
/// [`Store::read_for_export`] and [`Store::read_tenant_for_export`] give, within the same
/// bounds, and says how many and which is last without decoding.
pub async fn an_export_page_gives_the_events_an_export_read_gives(store: Arc<dyn Store>) {
    let stored = append_four_tenants(store.as_ref()).await;
    let seqs = |events: &[ExportEvent]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let texts = |events: Vec<ExportEvent>| {
        events
            .into_iter()
            .map(|e| (e.seq, format!("{:?}", e.into_event().unwrap())))
            .collect::<Vec<_>>()
    };
    let (after, up_to) = (stored[1].0, stored[10].0);
    for (tenant, limit) in [(None, 100), (None, 3), (Some("a"), 100), (Some("b"), 1)] {
        let page = store
            .read_page_for_export(tenant, after, up_to, limit)
            .await
            .unwrap();
        let read = match tenant {
            Some(tenant) => store.read_tenant_for_export(tenant, after, up_to, limit),
            None => store.read_for_export(after, up_to, limit),
        }
        .await
        .unwrap();
        assert!(!read.is_empty(), "{tenant:?}: the check needs events");
        assert_eq!(page.len(), read.len(), "{tenant:?}, limit {limit}");
        assert_eq!(page.last_seq(), read.last().map(|e| e.seq));
        let decoded = page.decode().unwrap();
        assert_eq!(seqs(&decoded), seqs(&read), "{tenant:?}, limit {limit}");
        assert_eq!(texts(decoded), texts(read));
    }
    assert!(store
        .read_page_for_export(Some("nobody"), 0, u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}
