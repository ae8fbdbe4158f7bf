//! The exporter against a real SQLite file and a real directory.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use auditsync_core::registry::{build_formatter, build_schema};
use auditsync_core::{ObjectKey, Sink};
use auditsync_engine::encode::{encode_file, FileLimits};
use auditsync_engine::export::batch_key;
use auditsync_engine::prefix::PrefixedSink;
use auditsync_engine::{BatchLimits, Compression, Destination, Exporter, FileFormat};
use auditsync_pv::{PvConfig, PvSink};
use auditsync_store::{Batch, Store};
use auditsync_store_sqlite::SqliteStore;
use bytes::Bytes;
use serde_json::{json, Map, Value};

fn link() {
    auditsync_catalog::link();
    auditsync_ndjson::link();
    auditsync_pv::link();
}

fn uevent(i: u64) -> auditsync_core::Event {
    let schema = build_schema("uevents").unwrap();
    let mut event = schema
        .parse(json!({
            "opType": if i % 2 == 0 { "Query" } else { "Mutation" },
            "createdAt": 1_690_610_557_857u64 + i * 1_000,
            "nameHints": ["User"],
            "userEmail": format!("user{i}@example.com"),
            "customerName": "example.com",
            "responseCode": 200,
            "requestParams": {"email": format!("\"u{i}@example.com\""), "n": i},
            "requestPayload": "[\"_id\",\"name\"]",
            "latencyInMillis": i % 97,
        }))
        .unwrap();
    event.id = format!("event-{i}");
    event
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    store: Arc<SqliteStore>,
    sink: Arc<PvSink>,
}

fn fixture() -> Fixture {
    link();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("db/audit.db")).unwrap());
    let root = dir.path().join("export");
    let sink = Arc::new(PvSink::new(PvConfig {
        root: root.clone(),
        stale_temp_secs: 600,
    }));
    Fixture {
        _dir: dir,
        root,
        store,
        sink,
    }
}

/// A fixture whose store holds `uevent(0)` to `uevent(events - 1)`.
async fn fixture_with(events: u64) -> Fixture {
    let f = fixture();
    f.store
        .append_events((0..events).map(uevent).collect())
        .await
        .unwrap();
    f
}

fn format(compression: Compression) -> FileFormat {
    FileFormat {
        schema: build_schema("uevents").unwrap(),
        formatter: build_formatter("ndjson", &Map::new()).unwrap(),
        compression,
    }
}

fn destination(f: &Fixture, compression: Compression, max_events: u64) -> Destination {
    Destination {
        tenant: None,
        pause: None,
        name: "local".into(),
        sink: Arc::new(PrefixedSink::new(f.sink.clone(), "pre").unwrap()),
        format: format(compression),
        limits: BatchLimits {
            max_events,
            max_bytes: u64::MAX,
        },
    }
}

fn decompress(key: &str, body: &[u8]) -> String {
    let mut text = String::new();
    if key.ends_with(".gz") {
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .unwrap();
    } else if key.ends_with(".zst") {
        zstd::stream::read::Decoder::new(body)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
    } else {
        text = String::from_utf8(body.to_vec()).unwrap();
    }
    text
}

/// Every exported line, parsed, keyed by the `n` request parameter.
async fn exported(sink: &PvSink) -> (usize, HashMap<u64, Value>) {
    let mut by_n = HashMap::new();
    let objects = sink.list("").await.unwrap();
    for meta in &objects {
        let body = sink.get(&meta.key).await.unwrap();
        for line in decompress(meta.key.as_str(), &body).lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            let n = value["requestParams"]["n"].as_u64().unwrap();
            assert!(by_n.insert(n, value).is_none(), "event {n} exported twice");
        }
    }
    (objects.len(), by_n)
}

/// The keys of every exported file, in order.
async fn keys(sink: &PvSink) -> Vec<String> {
    let objects = sink.list("").await.unwrap();
    objects.into_iter().map(|m| m.key.to_string()).collect()
}

#[tokio::test]
async fn exports_every_event_once_in_bounded_files_for_each_compression() {
    for compression in [
        Compression::None,
        Compression::Gzip(6),
        Compression::Zstd(3),
    ] {
        let f = fixture_with(2_500).await;
        let exporter = Arc::new(Exporter::new(
            f.store.clone(),
            "acme".into(),
            vec![destination(&f, compression, 1_000)],
        ));
        let reports = exporter.export_once().await;
        assert!(reports[0].error.is_none(), "{:?}", reports[0].error);
        assert_eq!((reports[0].files, reports[0].events), (3, 2_500));
        let (files, by_n) = exported(&f.sink).await;
        assert_eq!((files, by_n.len()), (3, 2_500), "{compression:?}");
        let expected = uevent(1234);
        assert_eq!(by_n[&1234]["userEmail"], json!(expected.actor.user_email));
        assert_eq!(by_n[&1234]["opType"], json!("Query"));
        let keys = keys(&f.sink).await;
        assert_eq!(
            keys[0],
            format!(
                "pre/acme/audit/2023/07/29/06/00000000000000000001-00000000000000001000.ndjson{}",
                compression.suffix()
            )
        );
        // a second run finds nothing new
        let again = exporter.export_once().await;
        assert_eq!(again[0].files, 0);
        assert_eq!(f.store.cursor("local").await.unwrap(), 2_500);
    }
}

#[tokio::test]
async fn byte_limit_cuts_files() {
    let f = fixture_with(300).await;
    let mut dest = destination(&f, Compression::None, u64::MAX);
    dest.limits.max_bytes = 20_000;
    let exporter = Arc::new(Exporter::new(f.store.clone(), "acme".into(), vec![dest]));
    let report = exporter.export_once().await.remove(0);
    assert!(report.error.is_none());
    let objects = f.sink.list("").await.unwrap();
    assert!(objects.len() > 3, "{} files", objects.len());
    for meta in &objects {
        // the cut comes after the record that crossed the limit: at most one line over
        assert!(meta.size < 20_000 + 1_000, "{meta:?}");
    }
    assert_eq!(exported(&f.sink).await.1.len(), 300);
}

#[tokio::test]
async fn a_batch_recorded_before_a_crash_is_finished_under_its_key() {
    for uploaded_before_crash in [false, true] {
        let f = fixture_with(50).await;
        let dest = destination(&f, Compression::Gzip(6), 20);
        // what the exporter does before it crashes: encode, record, maybe put
        let file = encode_file(
            f.store.as_ref(),
            &dest.format,
            None,
            0,
            u64::MAX,
            FileLimits {
                max_events: 20,
                max_bytes: u64::MAX,
            },
            Vec::new(),
        )
        .await
        .unwrap()
        .unwrap();
        let key = batch_key(
            "pre",
            "acme",
            file.earliest_time,
            file.first_seq,
            file.last_seq,
            "ndjson.gz",
        )
        .unwrap();
        f.store
            .begin_batch(&Batch {
                destination: "local".into(),
                first_seq: file.first_seq,
                last_seq: file.last_seq,
                key: key.to_string(),
                events: file.events,
                bytes: file.body.len() as u64,
                sha256: file.sha256.clone(),
                created_ms: 0,
                earliest_ms: None,
                latest_ms: None,
            })
            .await
            .unwrap();
        if uploaded_before_crash {
            f.sink
                .put(&key, Bytes::from(file.body.clone()))
                .await
                .unwrap();
        }
        let exporter = Arc::new(Exporter::new(f.store.clone(), "acme".into(), vec![dest]));
        let report = exporter.export_once().await.remove(0);
        assert!(report.error.is_none(), "{:?}", report.error);
        let (files, by_n) = exported(&f.sink).await;
        assert_eq!((files, by_n.len()), (3, 50));
        assert_eq!(f.sink.get(&key).await.unwrap(), Bytes::from(file.body));
    }
}

#[tokio::test]
async fn a_different_object_at_the_key_is_a_conflict_and_the_cursor_stays() {
    let f = fixture_with(10).await;
    let dest = destination(&f, Compression::None, 100);
    let key = batch_key("pre", "acme", uevent(0).time, 1, 10, "ndjson").unwrap();
    f.sink
        .put(&key, Bytes::from("someone else's file\n"))
        .await
        .unwrap();
    let exporter = Arc::new(Exporter::new(f.store.clone(), "acme".into(), vec![dest]));
    let report = exporter.export_once().await.remove(0);
    let err = report.error.expect("conflict").to_string();
    assert!(
        err.contains("conflict at `pre/acme/audit/") && err.contains("Nothing was overwritten"),
        "{err}"
    );
    assert_eq!(f.store.cursor("local").await.unwrap(), 0);
    assert_eq!(
        f.sink.get(&key).await.unwrap(),
        Bytes::from("someone else's file\n")
    );
    let _ = ObjectKey::new("x").unwrap();
    assert!(f.root.exists());
}

/// The next file is encoded while the one before it is put: when that put fails, the file
/// encoded beside it is neither recorded nor put, and the cursor stays after the last file
/// that went in. The next run, once the cause is gone, exports the rest once.
#[tokio::test]
async fn a_failed_put_stops_the_run_before_the_file_encoded_beside_it() {
    let f = fixture_with(30).await;
    let dest = destination(&f, Compression::None, 10);
    let second = batch_key("pre", "acme", uevent(10).time, 11, 20, "ndjson").unwrap();
    f.sink
        .put(&second, Bytes::from("someone else's file\n"))
        .await
        .unwrap();
    let exporter = Arc::new(Exporter::new(f.store.clone(), "acme".into(), vec![dest]));
    exporter.wait_out_pauses(false);
    let report = exporter.export_once().await.remove(0);
    assert!(report.error.is_some(), "the second file conflicts");
    assert_eq!((report.files, report.events), (1, 10));
    assert_eq!(f.store.cursor("local").await.unwrap(), 10);
    let pending = f
        .store
        .pending_batch("local")
        .await
        .unwrap()
        .expect("pending");
    assert_eq!((pending.first_seq, pending.last_seq), (11, 20));
    assert_eq!(keys(&f.sink).await.len(), 2, "{:?}", keys(&f.sink).await);

    f.sink.delete(&second).await.unwrap();
    let report = exporter.export_once().await.remove(0);
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!((report.files, report.events), (2, 20));
    let (files, by_n) = exported(&f.sink).await;
    assert_eq!(files, 3);
    assert_eq!(by_n.len(), 30);
    assert_eq!(f.store.cursor("local").await.unwrap(), 30);
}

/// While the store's check at open holds writes back, an export reads its first file
/// before it takes its lease. That file is used only if the lease shows the destination
/// still where it was read from: here another process exports the first events meanwhile,
/// and the file read ahead (events 1 to 10) must not go out beside its file (1 to 5).
#[tokio::test]
async fn a_file_read_ahead_of_the_lease_is_dropped_when_the_destination_moved_meanwhile() {
    let f = fixture_with(30).await;
    let (held, release) = SqliteStore::open_with_check_held(f.store.path()).unwrap();
    assert!(held.holds_writes());
    let held = Arc::new(held);
    let dest = destination(&f, Compression::None, 10);
    let waiting = Arc::new(Exporter::new(held.clone(), "acme".into(), vec![dest]));
    let run = tokio::spawn({
        let waiting = Arc::clone(&waiting);
        async move { waiting.export_once().await.remove(0) }
    });
    // The waiting export reads ahead: its cursor, then its first page.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let other = Exporter::new(
        f.store.clone(),
        "acme".into(),
        vec![destination(&f, Compression::None, 10)],
    );
    let first = other
        .export_destination(&destination(&f, Compression::None, 10), 5)
        .await;
    assert_eq!((first.files, first.events), (1, 5), "{:?}", first.error);
    drop(release);
    let report = run.await.unwrap();
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!((report.files, report.events), (3, 25));
    let (files, by_n) = exported(&f.sink).await;
    assert_eq!((files, by_n.len()), (4, 30));
    assert_eq!(f.store.cursor("local").await.unwrap(), 30);
}

/// Issue 10, point 8: auditsync's own event (time: now) stored first, then events backfilled
/// from months earlier: the file's key took the own event's date, misleading a reader that
/// prunes by key date. The key's date is now the file's earliest event's, so no event in a
/// file is older than its key says.
#[tokio::test]
async fn a_key_carries_the_date_of_the_files_earliest_event() {
    let f = fixture();
    let mut recent = uevent(0);
    recent.time = 1_732_000_000_000; // 2024-11-19
    let mut backfill: Vec<_> = (1..5).map(uevent).collect(); // 2023-07-29
    let mut events = vec![recent];
    events.append(&mut backfill);
    f.store.append_events(events).await.unwrap();
    let exporter = Arc::new(Exporter::new(
        f.store.clone(),
        "acme".into(),
        vec![destination(&f, Compression::None, 100)],
    ));
    let reports = exporter.export_once().await;
    assert!(reports[0].error.is_none(), "{:?}", reports[0].error);
    let keys = keys(&f.sink).await;
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("pre/acme/audit/2023/07/29/06/"),
        "{keys:?}"
    );
}

/// A file says it holds the last events in range only when the store had no more: then the
/// export reads no further.
#[tokio::test]
async fn a_file_is_exhausted_only_when_the_store_had_no_more() {
    let f = fixture_with(30).await;
    let format = format(Compression::None);
    let exhausted = |max_events: u64, max_bytes: u64, up_to: u64| {
        let (store, format) = (f.store.clone(), format.clone());
        async move {
            let file = encode_file(
                store.as_ref(),
                &format,
                None,
                0,
                up_to,
                FileLimits {
                    max_events,
                    max_bytes,
                },
                Vec::new(),
            )
            .await
            .unwrap()
            .unwrap();
            (file.events, file.exhausted)
        }
    };
    assert_eq!(exhausted(100, u64::MAX, u64::MAX).await, (30, true));
    assert_eq!(
        exhausted(10, u64::MAX, u64::MAX).await,
        (10, false),
        "more follow"
    );
    assert_eq!(
        exhausted(100, u64::MAX, 12).await,
        (12, true),
        "none up to 12"
    );
    let (events, done) = exhausted(100, 1024, u64::MAX).await;
    assert!(
        events < 30 && !done,
        "the byte limit: {events} events, exhausted {done}"
    );
    // A tenant's read is short when its tenant has no more.
    let tenant = encode_file(
        f.store.as_ref(),
        &format,
        Some("example.com"),
        0,
        u64::MAX,
        FileLimits {
            max_events: 100,
            max_bytes: u64::MAX,
        },
        Vec::new(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((tenant.events, tenant.exhausted), (30, true));
}

/// A failure one process runs into is shared through the store: a second process on the
/// same store shows the destination failing with the first one's reason and waits out its
/// pause; an operator's one-off export tries now; a run that ends well clears it for both.
#[tokio::test]
async fn a_destination_failure_is_shared_by_every_process_on_the_store() {
    use auditsync_engine::health::DestinationState;

    let f = fixture();
    // The volume's root is a file: every put fails until it is removed.
    std::fs::write(&f.root, b"not a directory").unwrap();
    f.store
        .append_events((0..10).map(uevent).collect())
        .await
        .unwrap();
    let store: Arc<dyn Store> = f.store.clone();
    let exporter = || {
        Arc::new(Exporter::new(
            Arc::clone(&store),
            "acme".into(),
            vec![destination(&f, Compression::None, 1_000)],
        ))
    };
    let (a, b) = (exporter(), exporter());

    let error = a
        .export_once()
        .await
        .remove(0)
        .error
        .expect("the root is a file");
    let recorded = store.destination_failures().await.unwrap().unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].0, "local");
    assert_eq!(
        (recorded[0].1.last_error.as_str(), recorded[0].1.failures),
        (error.to_string().as_str(), 1)
    );

    let waited = b.export_once().await.remove(0);
    assert!(waited.error.is_none(), "{waited:?}");
    assert!(
        waited
            .skipped
            .as_deref()
            .is_some_and(|why| why.starts_with("failing since")),
        "b waits out a's pause: {waited:?}"
    );
    assert_eq!(
        b.health().get("local").state,
        DestinationState::Failing(recorded[0].1.clone()),
        "b shows a's failure"
    );

    b.wait_out_pauses(false);
    assert!(b.export_once().await.remove(0).error.is_some());
    let recorded = store.destination_failures().await.unwrap().unwrap();
    assert_eq!(recorded[0].1.failures, 2, "counted on from a's failure");

    std::fs::remove_file(&f.root).unwrap();
    let report = b.export_once().await.remove(0);
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(report.events, 10);
    assert_eq!(
        store.destination_failures().await.unwrap(),
        Some(Vec::new())
    );
    assert_eq!(b.health().get("local").state, DestinationState::Active);

    // a learns at its next run that another process's run ended well.
    let report = a.export_once().await.remove(0);
    assert!(
        report.error.is_none() && report.skipped.is_none(),
        "{report:?}"
    );
    assert_eq!(a.health().get("local").state, DestinationState::Active);
    assert_eq!(exported(&f.sink).await.1.len(), 10, "each event once");
}

/// A volume that stores more events in the store as it takes files: events that arrive
/// while a run is under way.
#[derive(Debug)]
struct ArrivingDuringTheRun {
    inner: Arc<PvSink>,
    store: Arc<SqliteStore>,
    /// Stored at the first put.
    arriving: std::sync::Mutex<Option<Vec<auditsync_core::Event>>>,
    /// Stored at every put: this many events, numbered on from `next`.
    at_every_put: u64,
    next: std::sync::atomic::AtomicU64,
    puts: std::sync::atomic::AtomicU64,
}

impl ArrivingDuringTheRun {
    fn new(f: &Fixture, arriving: Vec<auditsync_core::Event>, at_every_put: u64) -> Self {
        Self {
            inner: f.sink.clone(),
            store: f.store.clone(),
            arriving: std::sync::Mutex::new(Some(arriving)),
            at_every_put,
            next: std::sync::atomic::AtomicU64::new(0),
            puts: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Sink for ArrivingDuringTheRun {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
    ) -> Result<auditsync_core::PutOutcome, auditsync_core::SinkError> {
        use std::sync::atomic::Ordering::SeqCst;
        let arriving = self.arriving.lock().unwrap().take();
        if let Some(events) = arriving {
            self.store.append_events(events).await.unwrap();
        }
        if self.at_every_put > 0 {
            let from = self.next.fetch_add(self.at_every_put, SeqCst);
            let events = (from..from + self.at_every_put).map(uevent).collect();
            self.store.append_events(events).await.unwrap();
        }
        self.puts.fetch_add(1, SeqCst);
        self.inner.put(key, body).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, auditsync_core::SinkError> {
        self.inner.get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<auditsync_core::ObjectMeta>, auditsync_core::SinkError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), auditsync_core::SinkError> {
        self.inner.delete(key).await
    }
}

/// A scheduled run (`export_following`) goes on past the head it began with while a full
/// file of newer events waits, and keeps its files full; it does not when less than a file
/// waits, when told to stop following, or for a tenant's destination; `export_once` ends
/// at its head. `stored` events are there first, files take 10, and the first put stores
/// `arriving` more.
#[tokio::test]
async fn a_scheduled_run_goes_on_while_a_full_file_of_new_events_waits() {
    #[derive(Debug, Clone, Copy)]
    enum Run {
        Once,
        Following,
        FollowingStopped,
        FollowingTenant,
    }
    /// The run, events stored, events arriving, the files' first and last sequence
    /// numbers, the cursor after.
    type Case = (Run, u64, u64, &'static [(u64, u64)], u64);
    let cases: [Case; 7] = [
        (Run::Once, 15, 25, &[(1, 10), (11, 15)], 15),
        // After 11-15 the head is 40: 25 wait, so 16-25 and 26-35 are full files, and the
        // last file, 36-40, is all that is left.
        (
            Run::Following,
            15,
            25,
            &[(1, 10), (11, 15), (16, 25), (26, 35), (36, 40)],
            40,
        ),
        // After 11-20 the next file would end at 25, the head the run began with: the
        // head is read again first, and the file is full (21-30), not cut at 25.
        (
            Run::Following,
            25,
            20,
            &[(1, 10), (11, 20), (21, 30), (31, 40), (41, 45)],
            45,
        ),
        // 9 arriving are less than a file: the run ends at 15 and leaves them to the next.
        (Run::Following, 15, 9, &[(1, 10), (11, 15)], 15),
        (Run::Following, 15, 10, &[(1, 10), (11, 15), (16, 25)], 25),
        (Run::FollowingStopped, 15, 25, &[(1, 10), (11, 15)], 15),
        (Run::FollowingTenant, 15, 25, &[(1, 10), (11, 15)], 15),
    ];
    for (run, stored, arriving, files, cursor) in cases {
        let f = fixture_with(stored).await;
        let mut dest = destination(&f, Compression::None, 10);
        let events = (stored..stored + arriving).map(uevent).collect();
        dest.sink = Arc::new(ArrivingDuringTheRun::new(&f, events, 0));
        if matches!(run, Run::FollowingTenant) {
            dest.tenant = Some("example.com".into());
        }
        let exporter = Arc::new(Exporter::new(f.store.clone(), "acme".into(), vec![dest]));
        let report = match run {
            Run::Once => exporter.export_once().await,
            Run::FollowingStopped => {
                let (_stop, stopped) = tokio::sync::watch::channel(true);
                exporter.export_following(stopped).await
            }
            Run::Following | Run::FollowingTenant => {
                let (_stop, going_on) = tokio::sync::watch::channel(false);
                exporter.export_following(going_on).await
            }
        }
        .remove(0);
        assert!(report.error.is_none(), "{run:?}: {:?}", report.error);
        let seqs: Vec<(u64, u64)> = keys(&f.sink)
            .await
            .iter()
            .map(|key| {
                let name = key.rsplit('/').next().unwrap();
                let (first, last) = name.trim_end_matches(".ndjson").split_once('-').unwrap();
                (first.parse().unwrap(), last.parse().unwrap())
            })
            .collect();
        assert_eq!(seqs, files, "{run:?} with {arriving} arriving");
        assert_eq!(report.files as usize, files.len(), "{run:?}");
        assert_eq!(f.store.cursor("local").await.unwrap(), cursor, "{run:?}");
        let (_, by_n) = exported(&f.sink).await;
        assert_eq!(by_n.len() as u64, cursor, "{run:?}: each exported once");
    }
}

/// A scheduled run that follows events which never stop arriving (each file's put stores a
/// full file more, so each time it follows it reaches one file further) ends at the head it
/// last read when the schedules stop: the shutdown does not wait out `FOLLOW_AT_MOST`
/// (60 s), and nothing is put after it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_schedules_ends_a_run_that_follows_events_still_arriving() {
    use std::sync::atomic::Ordering::SeqCst;
    let f = fixture_with(15).await;
    let sink = Arc::new(ArrivingDuringTheRun::new(&f, Vec::new(), 10));
    sink.next.store(15, SeqCst);
    let mut dest = destination(&f, Compression::None, 10);
    dest.sink = sink.clone();
    let exporter = Arc::new(Exporter::new(f.store.clone(), "acme".into(), vec![dest]));
    let running = auditsync_engine::schedule::Scheduler::new(exporter, f.store.clone())
        .export_on(auditsync_engine::cron::Schedule::parse("* * * * * *").unwrap())
        .start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sink.puts.load(SeqCst) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run put {} files in 30 s",
            sink.puts.load(SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::timeout(std::time::Duration::from_secs(20), running.shutdown())
        .await
        .expect("the shutdown waited for a run that follows arriving events");
    let puts = sink.puts.load(SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        sink.puts.load(SeqCst),
        puts,
        "a file was put after the shutdown"
    );
    // Every file that was put is complete and counted: the cursor is at its last event.
    let (files, by_n) = exported(&f.sink).await;
    assert_eq!(files as u64, puts);
    assert_eq!(by_n.len() as u64, f.store.cursor("local").await.unwrap());
    assert!(by_n.len() as u64 >= 15 + 10, "{} exported", by_n.len());
}
