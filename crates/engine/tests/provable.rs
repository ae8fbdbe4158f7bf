//! Provable archives on a real SQLite store and a real directory: exports write signed,
//! chained manifests, and `verify_archive` finds every kind of tampering, each as the right
//! kind of finding, while the untouched tree and a copy of it verify clean.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditsync_core::registry::{build_formatter, build_schema};
use auditsync_core::Sink;
use auditsync_engine::manifests::ManifestSettings;
use auditsync_engine::prefix::PrefixedSink;
use auditsync_engine::verify_archive::{
    verify_archive, ArchiveReport, Checkpoint, FindingKind, VerifyOptions, VerifyProgress,
};
use auditsync_engine::{BatchLimits, Compression, Destination, Exporter, FileFormat};
use auditsync_manifest::{encode, KeyRing, Manifest, ManifestSigner};
use auditsync_pv::{PvConfig, PvSink};
use auditsync_store::Store;
use auditsync_store_sqlite::SqliteStore;
use serde_json::{json, Map};

const RUNS: u64 = 5;
const EVENTS_PER_RUN: u64 = 50;
const EVENTS_PER_FILE: u64 = 5;

fn event(i: u64) -> auditsync_core::Event {
    let schema = build_schema("uevents").unwrap();
    let mut event = schema
        .parse(json!({
            "opType": "Query",
            "createdAt": 1_690_610_557_857u64 + i * 60_000,
            "nameHints": ["User"],
            "userEmail": format!("user{i}@example.com"),
            "customerName": "example.com",
            "responseCode": 200,
            "requestParams": {"n": i},
            "requestPayload": "[\"_id\"]",
            "latencyInMillis": i % 97,
        }))
        .unwrap();
    event.id = format!("event-{i}");
    event
}

fn sink_at(root: &Path) -> Arc<dyn Sink> {
    Arc::new(PvSink::new(PvConfig {
        root: root.to_path_buf(),
        stale_temp_secs: 600,
    }))
}

/// Exports `RUNS` runs of `EVENTS_PER_RUN` events into `root/pre/acme/audit/`: 50 gzip files
/// and 5 manifests.
async fn exported_tree(root: &Path, db: &Path, signer: Arc<ManifestSigner>) {
    auditsync_catalog::link();
    auditsync_ndjson::link();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    let destination = Destination {
        tenant: None,
        pause: None,
        name: "archive".into(),
        sink: Arc::new(PrefixedSink::new(sink_at(root), "pre").unwrap()),
        format: FileFormat {
            schema: build_schema("uevents").unwrap(),
            formatter: build_formatter("ndjson", &Map::new()).unwrap(),
            compression: Compression::Gzip(6),
        },
        limits: BatchLimits {
            max_events: EVENTS_PER_FILE,
            max_bytes: u64::MAX,
        },
    };
    let exporter = Arc::new(
        Exporter::new(store.clone(), "acme".into(), vec![destination]).with_manifests(
            ManifestSettings {
                signer,
                next_key: None,
                interval: Duration::from_secs(3600),
            },
        ),
    );
    for run in 0..RUNS {
        let events = (run * EVENTS_PER_RUN..(run + 1) * EVENTS_PER_RUN)
            .map(event)
            .collect();
        store.append_events(events).await.unwrap();
        let reports = exporter.export_once().await;
        assert!(reports[0].error.is_none(), "{:?}", reports[0].error);
        assert_eq!(reports[0].manifests.written, 1);
        assert_eq!(reports[0].manifests.files, EVENTS_PER_RUN / EVENTS_PER_FILE);
    }
    // Nothing new and the last manifest is fresh: no empty manifest.
    let reports = exporter.export_once().await;
    assert_eq!(reports[0].manifests.written, 0);
}

async fn verify(root: &Path, keys: &KeyRing, checkpoint: Option<&Checkpoint>) -> ArchiveReport {
    let options = VerifyOptions {
        keys: keys.clone(),
        checkpoint: checkpoint.cloned(),
        now_ms: chrono::Utc::now().timestamp_millis(),
        ..VerifyOptions::default()
    };
    verify_archive(sink_at(root), &options, &VerifyProgress::default())
        .await
        .unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
    out.sort();
}

/// A small deterministic generator, so a failing mutation can be replayed by its number.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[tokio::test]
async fn every_mutation_of_an_exported_tree_is_found_as_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let signer = Arc::new(ManifestSigner::generate());
    exported_tree(&tree, &dir.path().join("audit.db"), signer.clone()).await;
    let keys = KeyRing::new([signer.public_key()]);

    let mut all = Vec::new();
    files_under(&tree, &mut all);
    let (manifests, files): (Vec<PathBuf>, Vec<PathBuf>) = all
        .into_iter()
        .partition(|p| p.to_string_lossy().contains("/_manifests/"));
    assert_eq!((manifests.len(), files.len()), (5, 50));

    // The untouched tree and a copy of it verify clean, and give a checkpoint.
    let clean = verify(&tree, &keys, None).await;
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    assert_eq!(
        (clean.manifests, clean.files, clean.events),
        (5, 50, RUNS * EVENTS_PER_RUN)
    );
    let copy = dir.path().join("copy");
    copy_tree(&tree, &copy);
    let report = verify(&copy, &keys, None).await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    let checkpoint = Checkpoint {
        heads: clean.heads.clone(),
    };
    // A stranger's key proves nothing.
    let stranger = KeyRing::new([ManifestSigner::generate().public_key()]);
    let report = verify(&tree, &stranger, None).await;
    assert_eq!(
        report
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::UnknownKey)
            .count(),
        5
    );

    let other_signer = ManifestSigner::generate();
    let relative = |p: &Path| p.strip_prefix(&tree).unwrap().to_path_buf();
    let mut rng = Rng(0x5eed);
    let mut found = [0u32; 9];
    for round in 0..1000 {
        let work = tempfile::tempdir().unwrap();
        let copy = work.path().join("tree");
        copy_tree(&tree, &copy);
        let at = |p: &Path| copy.join(relative(p));
        let mutation = round % 9;
        let file = &files[rng.below(files.len())];
        let manifest_index = rng.below(manifests.len());
        let manifest = &manifests[manifest_index];
        let last_manifest = manifest_index == manifests.len() - 1;
        let expected: FindingKind = match mutation {
            0 => {
                let mut bytes = std::fs::read(at(file)).unwrap();
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
                std::fs::write(at(file), bytes).unwrap();
                FindingKind::FileModified
            }
            1 => {
                std::fs::remove_file(at(file)).unwrap();
                FindingKind::FileMissing
            }
            2 => {
                let stray = at(file).with_file_name(format!("x{round}.ndjson.gz"));
                std::fs::copy(at(file), &stray).unwrap();
                let mut bytes = std::fs::read(&stray).unwrap();
                bytes.push(b'\n');
                std::fs::write(&stray, bytes).unwrap();
                FindingKind::FileUnlisted
            }
            3 => {
                let other = loop {
                    let other = &files[rng.below(files.len())];
                    if other != file {
                        break other;
                    }
                };
                let swap = at(file).with_extension("swap");
                std::fs::rename(at(file), &swap).unwrap();
                std::fs::rename(at(other), at(file)).unwrap();
                std::fs::rename(&swap, at(other)).unwrap();
                FindingKind::FileSwapped
            }
            4 => {
                let bytes = std::fs::read(at(file)).unwrap();
                std::fs::write(at(file), &bytes[..rng.below(bytes.len())]).unwrap();
                FindingKind::FileTruncated
            }
            5 => {
                std::fs::remove_file(at(manifest)).unwrap();
                if last_manifest {
                    FindingKind::Rollback
                } else {
                    FindingKind::ManifestMissing
                }
            }
            6 => {
                // Edited (one file line dropped) and re-signed with another key.
                let m = Manifest::parse(&std::fs::read(at(manifest)).unwrap()).unwrap();
                let mut entries = m.entries.clone();
                entries.remove(rng.below(entries.len()));
                let mut header = m.header.clone();
                header.last_seq = entries.last().unwrap().last_seq;
                std::fs::write(at(manifest), encode(header, &entries, &other_signer)).unwrap();
                FindingKind::UnknownKey
            }
            7 => {
                // The tail dropped whole: the last manifest and the files it lists.
                let last = manifests.last().unwrap();
                let m = Manifest::parse(&std::fs::read(at(last)).unwrap()).unwrap();
                for entry in &m.entries {
                    std::fs::remove_file(copy.join("pre").join(&entry.key)).unwrap();
                }
                std::fs::remove_file(at(last)).unwrap();
                FindingKind::Rollback
            }
            _ => {
                let other = (manifest_index + 1 + rng.below(manifests.len() - 1)) % manifests.len();
                let swap = at(manifest).with_extension("swap");
                std::fs::rename(at(manifest), &swap).unwrap();
                std::fs::rename(at(&manifests[other]), at(manifest)).unwrap();
                std::fs::rename(&swap, at(&manifests[other])).unwrap();
                FindingKind::ManifestOutOfOrder
            }
        };
        let report = verify(&copy, &keys, Some(&checkpoint)).await;
        assert!(
            report.findings.iter().any(|f| f.kind == expected),
            "round {round} (mutation {mutation}): expected {expected:?}, found {:?}",
            report.findings
        );
        found[mutation] += 1;
    }
    assert!(found.iter().all(|&n| n >= 111), "{found:?}");
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<dyn Store>,
    destination: Destination,
}

fn setup() -> Setup {
    auditsync_catalog::link();
    auditsync_ndjson::link();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
    let destination = Destination {
        tenant: None,
        pause: None,
        name: "archive".into(),
        sink: sink_at(&root),
        format: FileFormat {
            schema: build_schema("uevents").unwrap(),
            formatter: build_formatter("ndjson", &Map::new()).unwrap(),
            compression: Compression::None,
        },
        limits: BatchLimits {
            max_events: 10,
            max_bytes: u64::MAX,
        },
    };
    Setup {
        _dir: dir,
        root,
        store,
        destination,
    }
}

fn exporter(
    s: &Setup,
    signer: &Arc<ManifestSigner>,
    next: Option<&ManifestSigner>,
    interval: Duration,
) -> Arc<Exporter> {
    Arc::new(
        Exporter::new(s.store.clone(), "acme".into(), vec![s.destination.clone()]).with_manifests(
            ManifestSettings {
                signer: signer.clone(),
                next_key: next.map(ManifestSigner::public_key),
                interval,
            },
        ),
    )
}

#[tokio::test]
async fn a_quiet_destination_gets_a_fresh_empty_manifest_and_a_stale_tail_is_found() {
    let s = setup();
    let signer = Arc::new(ManifestSigner::generate());
    let keys = KeyRing::new([signer.public_key()]);
    let exporter = exporter(&s, &signer, None, Duration::from_millis(300));
    s.store
        .append_events((0..15).map(event).collect())
        .await
        .unwrap();
    exporter.export_once().await;
    // Not due yet: nothing new, the last manifest is fresh.
    let results = exporter.write_manifests(None).await;
    assert_eq!(results[0].1.as_ref().unwrap().written, 0);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let results = exporter.write_manifests(None).await;
    let written = results[0].1.as_ref().unwrap();
    assert_eq!((written.written, written.files), (1, 0));
    let report = verify(&s.root, &keys, None).await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(
        (report.manifests, report.files, report.heads[0].number),
        (2, 2, 2)
    );

    let mut options = VerifyOptions {
        keys: keys.clone(),
        expect_fresh_ms: Some(60_000),
        now_ms: chrono::Utc::now().timestamp_millis(),
        ..VerifyOptions::default()
    };
    let fresh = verify_archive(sink_at(&s.root), &options, &VerifyProgress::default())
        .await
        .unwrap();
    assert!(fresh.findings.is_empty());
    options.now_ms += 120_000;
    let stale = verify_archive(sink_at(&s.root), &options, &VerifyProgress::default())
        .await
        .unwrap();
    assert_eq!(stale.findings.len(), 1);
    assert_eq!(stale.findings[0].kind, FindingKind::StaleTail);
}

#[tokio::test]
async fn a_rotated_key_is_trusted_through_the_announcement_signed_by_the_old_one() {
    let s = setup();
    let old = Arc::new(ManifestSigner::generate());
    let new = Arc::new(ManifestSigner::generate());
    s.store
        .append_events((0..10).map(event).collect())
        .await
        .unwrap();
    exporter(&s, &old, Some(&new), Duration::from_secs(3600))
        .export_once()
        .await;
    s.store
        .append_events((10..20).map(event).collect())
        .await
        .unwrap();
    exporter(&s, &new, None, Duration::from_secs(3600))
        .export_once()
        .await;
    let report = verify(&s.root, &KeyRing::new([old.public_key()]), None).await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.manifests, 2);
    // Without the announcement, the new key is a stranger.
    let s2 = setup();
    s2.store
        .append_events((0..10).map(event).collect())
        .await
        .unwrap();
    exporter(&s2, &old, None, Duration::from_secs(3600))
        .export_once()
        .await;
    s2.store
        .append_events((10..20).map(event).collect())
        .await
        .unwrap();
    exporter(&s2, &new, None, Duration::from_secs(3600))
        .export_once()
        .await;
    let report = verify(&s2.root, &KeyRing::new([old.public_key()]), None).await;
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].kind, FindingKind::UnknownKey);
}

#[tokio::test]
async fn a_manifest_uploaded_before_a_crash_is_adopted_and_a_strangers_is_refused() {
    use auditsync_manifest::{manifest_key, FileEntry, Header};
    let s = setup();
    let signer = Arc::new(ManifestSigner::generate());
    s.store
        .append_events((0..10).map(event).collect())
        .await
        .unwrap();
    // Files exported without manifests: the first manifest will list them.
    Arc::new(Exporter::new(
        s.store.clone(),
        "acme".into(),
        vec![s.destination.clone()],
    ))
    .export_once()
    .await;
    let batches = s.store.completed_batches("archive", 0, 10).await.unwrap();
    let entries: Vec<FileEntry> = batches
        .iter()
        .map(|b| FileEntry {
            key: b.key.clone(),
            bytes: b.bytes,
            sha256: b.sha256.clone(),
            events: b.events,
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            earliest: None,
            latest: None,
            schema: "uevents".into(),
            schema_version: 1,
            format: "ndjson".into(),
            compression: "none".into(),
        })
        .collect();
    let header = Header {
        format: String::new(),
        destination: "archive".into(),
        namespace: "acme".into(),
        number: 1,
        created: "2026-01-01T00:00:00.000Z".into(),
        previous: None,
        after_seq: 0,
        last_seq: 10,
        files: 0,
        events: 0,
        merkle_root: String::new(),
        key_id: String::new(),
        next_key: None,
    };
    let key = auditsync_core::ObjectKey::new(manifest_key("acme", 1)).unwrap();
    let stranger = ManifestSigner::generate();
    s.destination
        .sink
        .put(&key, encode(header.clone(), &entries, &stranger).into())
        .await
        .unwrap();
    let exporter = exporter(&s, &signer, None, Duration::from_secs(3600));
    let results = exporter.write_manifests(None).await;
    let err = results[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("did not sign"), "{err}");
    assert_eq!(s.store.manifest_head("archive").await.unwrap(), None);

    let ours = encode(header, &entries, &signer);
    s.destination.sink.delete(&key).await.unwrap();
    s.destination
        .sink
        .put(&key, ours.clone().into())
        .await
        .unwrap();
    let results = exporter.write_manifests(None).await;
    assert_eq!(results[0].1.as_ref().unwrap().written, 1);
    let head = s.store.manifest_head("archive").await.unwrap().unwrap();
    assert_eq!(head.number, 1);
    assert_eq!(s.destination.sink.get(&key).await.unwrap(), ours);
    let report = verify(&s.root, &KeyRing::new([signer.public_key()]), None).await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[tokio::test]
async fn an_event_is_located_by_id_and_its_proof_checks() {
    use auditsync_engine::proof::{check, check_file, locate_event, prove};
    let s = setup();
    let signer = Arc::new(ManifestSigner::generate());
    // Gaps in the sequence: ids replayed are not stored again.
    s.store
        .append_events((0..12).map(event).collect())
        .await
        .unwrap();
    s.store
        .append_events((5..25).map(event).collect())
        .await
        .unwrap();
    exporter(&s, &signer, None, Duration::from_secs(3600))
        .export_once()
        .await;
    let keys = KeyRing::new([signer.public_key()]);
    for i in [0u64, 9, 10, 17, 24] {
        let (file, record) = locate_event(s.store.as_ref(), "archive", &format!("event-{i}"))
            .await
            .unwrap();
        let proof = prove(s.destination.sink.as_ref(), "acme", &file, record)
            .await
            .unwrap();
        assert!(
            proof.record.contains(&format!("\"user{i}@example.com\"")),
            "{i}: {}",
            proof.record
        );
        let proven = check(&proof, &keys).unwrap();
        let body = s
            .destination
            .sink
            .get(&auditsync_core::ObjectKey::new(file).unwrap())
            .await
            .unwrap();
        check_file(&proof, &proven, &body).unwrap();
    }
    // Collected events are located no more (their neighbours may be gone).
    s.store.gc(&["archive".to_string()]).await.unwrap();
    let err = locate_event(s.store.as_ref(), "archive", "event-3")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was collected"), "{err}");
    let err = locate_event(s.store.as_ref(), "archive", "nope")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no event with id `nope`"), "{err}");
}

#[tokio::test]
async fn a_file_whose_record_count_differs_from_its_signed_line_is_found() {
    let s = setup();
    let signer = Arc::new(ManifestSigner::generate());
    s.store
        .append_events((0..15).map(event).collect())
        .await
        .unwrap();
    exporter(&s, &signer, None, Duration::from_secs(3600))
        .export_once()
        .await;
    let path = s.root.join(auditsync_manifest::manifest_key("acme", 1));
    let m = Manifest::parse(&std::fs::read(&path).unwrap()).unwrap();
    // A writer that miscounted, under the right key: the file's bytes still match.
    let mut entries = m.entries.clone();
    entries[1].events += 1;
    std::fs::write(&path, encode(m.header.clone(), &entries, &signer)).unwrap();
    let report = verify(&s.root, &KeyRing::new([signer.public_key()]), None).await;
    let kinds: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.key.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![(FindingKind::CountMismatch, entries[1].key.as_str())]
    );
    assert!(report.findings[0]
        .detail
        .starts_with("5 records; the manifest says 6"));
}
