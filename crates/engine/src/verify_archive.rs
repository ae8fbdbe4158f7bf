//! `verify-archive`: checks an exported tree against its manifests, offline, through any sink
//! (a bucket, or a local copy through the volume sink).
//!
//! Every chain (one per `<namespace>/audit/_manifests/` folder) is read whole: each manifest's
//! signature against the trusted keys (and the keys announced under them), its number against
//! its key, its link to the one before, its Merkle root against its file lines, and the
//! sequence ranges for gaps and overlaps. Then every object under `audit/` is read once: a
//! listed file must have its size, SHA-256 and record count; an object no manifest lists is
//! reported, and matched by content against missing files to tell a rename from an insertion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use auditsync_core::{ObjectKey, Sink, SinkError};
use auditsync_manifest::{number_in_key, KeyRing, Link, Manifest, SignatureCheck};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A listed file's bytes differ from what its manifest recorded.
    FileModified,
    /// A listed file is shorter than recorded.
    FileTruncated,
    /// A listed file is gone.
    FileMissing,
    /// A listed file's bytes are under another, unlisted key.
    FileRenamed,
    /// A listed file holds the bytes of another listed file.
    FileSwapped,
    /// An object under `audit/` that no manifest lists.
    FileUnlisted,
    /// A file's record count differs from its manifest's.
    CountMismatch,
    /// Sequence numbers are skipped between files or manifests.
    SequenceGap,
    /// Sequence ranges overlap.
    SequenceOverlap,
    /// A manifest of the chain is gone.
    ManifestMissing,
    /// A manifest was changed, or cannot be read.
    ManifestModified,
    /// A manifest's key does not carry its number.
    ManifestOutOfOrder,
    /// A manifest does not link to the one before it.
    ChainBroken,
    /// A signature does not match its header.
    BadSignature,
    /// A manifest signed by a key that is not trusted.
    UnknownKey,
    /// The chain is behind the checkpoint: its tail was cut off or rolled back.
    Rollback,
    /// The last manifest is older than `--expect-fresh` allows.
    StaleTail,
}

/// One problem, at one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// The key it is about (relative to the verified root).
    pub key: String,
    /// What was found.
    pub detail: String,
}

/// A chain's head, as `--save-checkpoint` keeps it and `--checkpoint` compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The chain's folder: `<root><namespace>`.
    pub chain: String,
    /// The last manifest's number.
    pub number: u64,
    /// Its key.
    pub key: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The last sequence number it covers.
    pub last_seq: u64,
    /// When it was written.
    pub created: String,
}

/// A head saved by an earlier verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// One head per chain.
    pub heads: Vec<ChainHead>,
}

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The trusted keys.
    pub keys: KeyRing,
    /// A head saved earlier: the chain must still reach it, unchanged.
    pub checkpoint: Option<Checkpoint>,
    /// The last manifest must be at most this old (milliseconds).
    pub expect_fresh_ms: Option<i64>,
    /// Unlisted files are reported but not counted as failures.
    pub allow_unmanifested: bool,
    /// Now, epoch ms (for `expect_fresh_ms`).
    pub now_ms: i64,
    /// Only files with events at or after this time (epoch ms) are read; the chain is still
    /// checked whole.
    pub from_ms: Option<i64>,
    /// Only files with events before this time (epoch ms) are read.
    pub to_ms: Option<i64>,
}

impl VerifyOptions {
    /// Whether a listed file's time bounds put it outside `--from/--to` (a file without
    /// recorded times is always in).
    fn leaves_out(&self, entry: &auditsync_manifest::FileEntry) -> bool {
        let Some((earliest, latest)) = entry.time_bounds_ms() else {
            return false;
        };
        self.from_ms.is_some_and(|from| latest < from)
            || self.to_ms.is_some_and(|to| earliest >= to)
    }
}

/// Progress, readable while a verification runs.
#[derive(Debug, Default)]
pub struct VerifyProgress {
    /// Objects to read (known after listing).
    pub objects_total: AtomicU64,
    /// Objects read.
    pub objects: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
}

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// Every problem, in key order.
    pub findings: Vec<Finding>,
    /// Each chain's head (what `--save-checkpoint` writes).
    pub heads: Vec<ChainHead>,
    /// Manifests read.
    pub manifests: u64,
    /// Files checked against a manifest.
    pub files: u64,
    /// Records counted in them.
    pub events: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Listed files not read because `--from/--to` leaves them out.
    pub files_skipped: u64,
}

impl ArchiveReport {
    /// Whether everything verified (unlisted files count unless allowed).
    pub fn is_clean(&self, allow_unmanifested: bool) -> bool {
        self.findings
            .iter()
            .all(|f| allow_unmanifested && f.kind == FindingKind::FileUnlisted)
    }
}

/// Why verification could not run at all (a finding is not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Listing or reading the archive failed.
    #[error("{0}")]
    Sink(#[from] SinkError),
    /// No manifest was found anywhere under the source.
    #[error("no manifests under the source ({objects} objects): nothing proves this archive; were manifests turned on when it was exported?")]
    NoManifests {
        /// Objects found.
        objects: usize,
    },
}

const MANIFEST_DIR: &str = "/audit/_manifests/";

/// One chain's manifests, read.
struct Chain {
    /// `<root><namespace>`: the folder above `audit/`.
    dir: String,
    /// The root the entry keys are relative to.
    root: String,
    /// (key, the manifest if it could be read), in key order.
    manifests: Vec<(String, Option<Manifest>)>,
}

fn finding(kind: FindingKind, key: &str, detail: impl Into<String>) -> Finding {
    Finding {
        kind,
        key: key.to_string(),
        detail: detail.into(),
    }
}

/// Verifies everything under the sink's root.
pub async fn verify_archive(
    sink: Arc<dyn Sink>,
    options: &VerifyOptions,
    progress: &VerifyProgress,
) -> Result<ArchiveReport, VerifyError> {
    let listed = sink.list("").await?;
    progress
        .objects_total
        .store(listed.len() as u64, Ordering::Relaxed);
    let mut report = ArchiveReport::default();
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    let mut data: Vec<(String, u64)> = Vec::new();
    for meta in &listed {
        let key = meta.key.as_str();
        if let Some(at) = key.find(MANIFEST_DIR) {
            let dir = &key[..at];
            let root = dir.rfind('/').map_or("", |i| &dir[..=i]);
            let chain = chains.entry(dir.to_string()).or_insert_with(|| Chain {
                dir: dir.to_string(),
                root: root.to_string(),
                manifests: Vec::new(),
            });
            let body = read(sink.as_ref(), &meta.key, progress, &mut report).await?;
            chain
                .manifests
                .push((key.to_string(), Manifest::parse(&body).ok()));
        } else if key.contains("/audit/") {
            data.push((key.to_string(), meta.size));
        }
    }
    if chains.is_empty() {
        return Err(VerifyError::NoManifests {
            objects: listed.len(),
        });
    }

    // Every file any valid-looking manifest lists: full key → (entry, manifest key).
    let mut expected: BTreeMap<String, (auditsync_manifest::FileEntry, String)> = BTreeMap::new();
    for chain in chains.values() {
        check_chain(chain, options, &mut report);
        for (key, manifest) in &chain.manifests {
            for entry in manifest.iter().flat_map(|m| &m.entries) {
                expected.insert(
                    format!("{}{}", chain.root, entry.key),
                    (entry.clone(), key.clone()),
                );
            }
        }
    }

    // Files the time range leaves out are neither read nor missed.
    let left_out: HashSet<String> = expected
        .iter()
        .filter(|(_, (entry, _))| options.leaves_out(entry))
        .map(|(key, _)| key.clone())
        .collect();
    expected.retain(|key, _| !left_out.contains(key));
    data.retain(|(key, _)| !left_out.contains(key));
    report.files_skipped = left_out.len() as u64;

    // Read every object once, a few at a time (hashing and counting on the blocking pool),
    // then sort out which listed file holds which bytes.
    let mut actual_sha: HashMap<String, String> = HashMap::new();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut queue = data.iter().map(|(key, _)| key.clone());
    loop {
        while in_flight.len() < READS_IN_FLIGHT {
            let Some(key) = queue.next() else { break };
            let entry = expected.get(&key).map(|(e, _)| e.clone());
            in_flight.spawn(check_object(sink.clone(), key, entry));
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let checked = joined.map_err(|e| {
            SinkError::new(
                auditsync_core::SinkOp::Get,
                auditsync_core::ErrorKind::Other,
                format!("a verification task failed: {e}"),
            )
        })??;
        progress.objects.fetch_add(1, Ordering::Relaxed);
        progress.bytes.fetch_add(checked.bytes, Ordering::Relaxed);
        report.bytes += checked.bytes;
        if let (Some((entry, _)), Some(count)) = (expected.get(&checked.key), checked.count) {
            report.files += 1;
            match count {
                Ok(n) => {
                    report.events += n;
                    if n != entry.events {
                        report.findings.push(finding(
                            FindingKind::CountMismatch,
                            &checked.key,
                            format!("{n} records; the manifest says {}", entry.events),
                        ));
                    }
                }
                Err(problem) => report.findings.push(finding(
                    FindingKind::FileModified,
                    &checked.key,
                    format!("its bytes match the manifest but cannot be read: {problem}"),
                )),
            }
        }
        actual_sha.insert(checked.key, checked.sha256);
    }
    let listed_by_sha: HashMap<&str, &str> = expected
        .iter()
        .map(|(k, (e, _))| (e.sha256.as_str(), k.as_str()))
        .collect();
    let present: HashSet<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
    let mut renamed_to: HashSet<&str> = HashSet::new();
    for (key, (entry, manifest)) in &expected {
        match actual_sha.get(key) {
            Some(sha) if *sha == entry.sha256 => {}
            Some(sha) => {
                let size = data.iter().find(|(k, _)| k == key).map_or(0, |(_, s)| *s);
                let (kind, detail) = match listed_by_sha.get(sha.as_str()) {
                    Some(other) => (
                        FindingKind::FileSwapped,
                        format!("it holds the bytes the manifest records for `{other}`"),
                    ),
                    None if size < entry.bytes => (
                        FindingKind::FileTruncated,
                        format!("{size} bytes; {manifest} records {}", entry.bytes),
                    ),
                    None => (
                        FindingKind::FileModified,
                        format!(
                            "sha256 {sha} ({size} bytes); {manifest} records {} ({} bytes)",
                            entry.sha256, entry.bytes
                        ),
                    ),
                };
                report.findings.push(finding(kind, key, detail));
            }
            None => {
                let moved = actual_sha
                    .iter()
                    .find(|(k, sha)| **sha == entry.sha256 && !expected.contains_key(*k));
                match moved {
                    Some((to, _)) => {
                        renamed_to.insert(to.as_str());
                        report.findings.push(finding(
                            FindingKind::FileRenamed,
                            key,
                            format!("its bytes are now at `{to}`"),
                        ));
                    }
                    None => report.findings.push(finding(
                        FindingKind::FileMissing,
                        key,
                        format!("listed in {manifest}"),
                    )),
                }
            }
        }
    }
    for key in present {
        if !expected.contains_key(key) && !renamed_to.contains(key) {
            report.findings.push(finding(
                FindingKind::FileUnlisted,
                key,
                "no manifest lists this object (inserted, or exported before manifests or after the last one)",
            ));
        }
    }
    report.findings.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(report)
}

/// Objects read and checked at once: enough to keep two cores busy hashing and
/// decompressing, and to hide a cloud's latency, with at most this many files in memory.
const READS_IN_FLIGHT: usize = 4;

/// One object, read and checked.
struct CheckedObject {
    key: String,
    bytes: u64,
    sha256: String,
    /// Its record count, when it is a listed file with the listed bytes.
    count: Option<Result<u64, String>>,
}

async fn check_object(
    sink: Arc<dyn Sink>,
    key: String,
    entry: Option<auditsync_manifest::FileEntry>,
) -> Result<CheckedObject, SinkError> {
    let object = ObjectKey::new(key.clone()).map_err(|e| {
        SinkError::new(
            auditsync_core::SinkOp::Get,
            auditsync_core::ErrorKind::Other,
            e.to_string(),
        )
    })?;
    let body = sink.get(&object).await?;
    tokio::task::spawn_blocking(move || {
        let sha256 = hex::encode(Sha256::digest(&body));
        let count = entry
            .filter(|e| e.sha256 == sha256)
            .map(|e| count_records(&key, &body, &e.schema));
        CheckedObject {
            bytes: body.len() as u64,
            key,
            sha256,
            count,
        }
    })
    .await
    .map_err(|e| {
        SinkError::new(
            auditsync_core::SinkOp::Get,
            auditsync_core::ErrorKind::Other,
            format!("a verification task failed: {e}"),
        )
    })
}

async fn read(
    sink: &dyn Sink,
    key: &ObjectKey,
    progress: &VerifyProgress,
    report: &mut ArchiveReport,
) -> Result<bytes::Bytes, SinkError> {
    let body = sink.get(key).await?;
    progress.objects.fetch_add(1, Ordering::Relaxed);
    progress
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    report.bytes += body.len() as u64;
    Ok(body)
}

/// Checks one chain's manifests among themselves and against the checkpoint.
fn check_chain(chain: &Chain, options: &VerifyOptions, report: &mut ArchiveReport) {
    let mut ring = options.keys.clone();
    let mut previous: Option<(&str, &Manifest)> = None;
    let mut previous_number = 0u64;
    for (key, manifest) in &chain.manifests {
        report.manifests += 1;
        let Some(m) = manifest else {
            report.findings.push(finding(
                FindingKind::ManifestModified,
                key,
                "not a readable manifest",
            ));
            continue;
        };
        let h = &m.header;
        let named = number_in_key(key);
        if named != Some(h.number) {
            report.findings.push(finding(
                FindingKind::ManifestOutOfOrder,
                key,
                format!("its header says it is manifest {}", h.number),
            ));
        }
        match m.check_signature(&ring) {
            SignatureCheck::Valid => {
                if let Some(Ok(next)) = m.next_key() {
                    ring.add(next);
                }
            }
            SignatureCheck::Bad => report.findings.push(finding(
                FindingKind::BadSignature,
                key,
                format!("the signature does not match its header (key {})", h.key_id),
            )),
            SignatureCheck::UnknownKey => report.findings.push(finding(
                FindingKind::UnknownKey,
                key,
                format!(
                    "signed by key {}, which is not trusted (trusted: {})",
                    h.key_id,
                    ring.ids().join(", ")
                ),
            )),
        }
        if !m.root_matches() {
            report.findings.push(finding(
                FindingKind::ManifestModified,
                key,
                "its file lines do not match its Merkle root",
            ));
        }
        check_entries(key, m, report);
        let number = named.unwrap_or(h.number);
        if number > previous_number + 1 {
            let missing = (previous_number + 1..number)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            report.findings.push(finding(
                FindingKind::ManifestMissing,
                &format!(
                    "{}{}",
                    chain.root,
                    auditsync_manifest::manifest_key(&h.namespace, previous_number + 1)
                ),
                format!("manifest(s) {missing} of the chain are gone"),
            ));
        }
        match previous {
            None if h.number == 1 && h.previous.is_some() => report.findings.push(finding(
                FindingKind::ChainBroken,
                key,
                "the first manifest links to a previous one",
            )),
            None => {}
            Some((prev_key, prev)) => {
                let link = Link {
                    key: prev_key[chain.root.len()..].to_string(),
                    sha256: prev.sha256.clone(),
                };
                match &h.previous {
                    Some(l) if *l == link => {}
                    Some(l) if l.key == link.key => report.findings.push(finding(
                        FindingKind::ManifestModified,
                        prev_key,
                        format!(
                            "the next manifest recorded its sha256 as {}; it is now {}",
                            l.sha256, link.sha256
                        ),
                    )),
                    other => report.findings.push(finding(
                        FindingKind::ChainBroken,
                        key,
                        format!(
                            "it links to {}, not to `{}`",
                            other
                                .as_ref()
                                .map_or("nothing".into(), |l| format!("`{}`", l.key)),
                            link.key
                        ),
                    )),
                }
                let prev_last = prev.header.last_seq;
                if h.after_seq > prev_last {
                    report.findings.push(finding(
                        FindingKind::SequenceGap,
                        key,
                        format!(
                            "it starts after seq {}; the manifest before ends at {prev_last}",
                            h.after_seq
                        ),
                    ));
                } else if h.after_seq < prev_last {
                    report.findings.push(finding(
                        FindingKind::SequenceOverlap,
                        key,
                        format!("it starts after seq {}; the manifest before already covers up to {prev_last}", h.after_seq),
                    ));
                }
            }
        }
        previous = Some((key, m));
        previous_number = number.max(previous_number);
    }
    let Some((head_key, head)) = previous else {
        return;
    };
    let head = ChainHead {
        chain: chain.dir.clone(),
        number: head.header.number,
        key: head_key.to_string(),
        sha256: head.sha256.clone(),
        last_seq: head.header.last_seq,
        created: head.header.created.clone(),
    };
    if let Some(fresh) = options.expect_fresh_ms {
        let created = chrono::DateTime::parse_from_rfc3339(&head.created)
            .map(|t| t.timestamp_millis())
            .unwrap_or(i64::MIN);
        if options.now_ms - created > fresh {
            report.findings.push(finding(
                FindingKind::StaleTail,
                &head.key,
                format!(
                    "the last manifest was written at {}, longer ago than expected",
                    head.created
                ),
            ));
        }
    }
    if let Some(saved) = options
        .checkpoint
        .iter()
        .flat_map(|c| &c.heads)
        .find(|h| h.chain == chain.dir)
    {
        let same = chain
            .manifests
            .iter()
            .find(|(k, _)| *k == saved.key)
            .and_then(|(_, m)| m.as_ref());
        match same {
            Some(m) if m.sha256 == saved.sha256 => {}
            Some(_) => report.findings.push(finding(
                FindingKind::Rollback,
                &saved.key,
                "the checkpoint's head manifest was replaced",
            )),
            None => report.findings.push(finding(
                FindingKind::Rollback,
                &saved.key,
                format!(
                    "the checkpoint's head (manifest {}, up to seq {}) is gone; the chain now ends at manifest {} (seq {})",
                    saved.number, saved.last_seq, head.number, head.last_seq
                ),
            )),
        }
    }
    report.heads.push(head);
}

/// The file lines of one manifest must tile its sequence range.
fn check_entries(key: &str, m: &Manifest, report: &mut ArchiveReport) {
    let mut last = m.header.after_seq;
    for entry in &m.entries {
        if entry.first_seq <= last || entry.last_seq < entry.first_seq {
            report.findings.push(finding(
                FindingKind::SequenceOverlap,
                key,
                format!(
                    "file `{}` ({}..={}) overlaps what comes before (up to {last})",
                    entry.key, entry.first_seq, entry.last_seq
                ),
            ));
        }
        last = last.max(entry.last_seq);
    }
    if last != m.header.last_seq {
        report.findings.push(finding(
            FindingKind::SequenceGap,
            key,
            format!(
                "its files end at seq {last}; its header says {}",
                m.header.last_seq
            ),
        ));
    }
}

/// Counts the records of an export file: decompressed by its suffix; NDJSON by its lines,
/// other formats through their reader with the schema's columns.
pub fn count_records(key: &str, body: &[u8], schema: &str) -> Result<u64, String> {
    let (stem, mut reader) =
        crate::Compression::reader_for(key, body).map_err(|e| e.to_string())?;
    if stem.ends_with(".ndjson") {
        let mut buf = vec![0u8; 256 * 1024];
        let (mut lines, mut last) = (0u64, b'\n');
        loop {
            let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            last = buf[n - 1];
        }
        return Ok(lines + u64::from(last != b'\n'));
    }
    let extension = stem.rsplit('.').next().unwrap_or_default();
    let formatter = auditsync_core::registry::formatter_for_file(stem)
        .ok_or_else(|| format!("no linked format reads `.{extension}` files"))?;
    let schema = auditsync_core::registry::build_schema(schema).map_err(|e| e.to_string())?;
    let records = formatter
        .read(schema.columns(), Box::new(BufReader::new(reader)))
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    for record in records {
        record.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}
