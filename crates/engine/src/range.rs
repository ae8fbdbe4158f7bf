//! On-demand export of a time range: the events still in the store merged with those already
//! in an archive (files an export wrote earlier, read back through their schema), each once,
//! sorted by event time, streamed into one file.
//!
//! Memory stays flat however large the range: candidates are sorted in runs of
//! [`RUN_EVENTS`] spilled to temporary files, then merged.
//!
//! Duplicates are found by event id when the archive's schema carries the id. When it does
//! not (`uevents` has no id column), a record is identified by its content as that schema
//! renders it; within one such identity and time, the output holds as many events as the
//! larger side has, taking the store's (complete) events first.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use auditsync_core::{Event, Schema, Sink, SinkError};
use auditsync_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::encode::FileFormat;

/// Candidates sorted in memory at once before spilling a run.
pub const RUN_EVENTS: usize = 20_000;

/// Which events a range export takes.
#[derive(Debug, Clone, Default)]
pub struct RangeQuery {
    /// Earliest event time, epoch ms, inclusive.
    pub from_ms: i64,
    /// Latest event time, epoch ms, exclusive.
    pub to_ms: i64,
    /// Only these actions (any of them); empty takes all.
    pub actions: Vec<String>,
    /// Only events whose actor (user id, email or name, token id or name) is one of these.
    pub actors: Vec<String>,
    /// Only events of these organizations (tenants).
    pub organizations: Vec<String>,
}

impl RangeQuery {
    fn matches(&self, event: &Event) -> bool {
        if event.time < self.from_ms || event.time >= self.to_ms {
            return false;
        }
        if !self.actions.is_empty() && !self.actions.contains(&event.action) {
            return false;
        }
        if !self.organizations.is_empty()
            && !event
                .organization
                .as_ref()
                .is_some_and(|o| self.organizations.contains(o))
        {
            return false;
        }
        if self.actors.is_empty() {
            return true;
        }
        let a = &event.actor;
        [
            &a.user_id,
            &a.user_email,
            &a.user_name,
            &a.token_id,
            &a.token_name,
        ]
        .into_iter()
        .flatten()
        .any(|v| self.actors.contains(v))
    }
}

/// Export files already written somewhere, to read events back from.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The sink, rooted where `<namespace>/audit/` starts.
    pub sink: Arc<dyn Sink>,
    /// The namespace of the export tree.
    pub namespace: String,
    /// The schema the files were written with.
    pub schema: Arc<dyn Schema>,
}

/// Progress of a range export, readable while it runs.
#[derive(Debug, Default)]
pub struct RangeProgress {
    /// Events looked at (store and archive).
    pub scanned: AtomicU64,
    /// Archive files read.
    pub files: AtomicU64,
    /// Archive files to read (known after listing).
    pub files_total: AtomicU64,
    /// Events written so far.
    pub written: AtomicU64,
}

/// What a range export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeReport {
    /// Events written.
    pub events: u64,
    /// Of those, taken from the store.
    pub from_store: u64,
    /// Of those, taken from the archive.
    pub from_archive: u64,
    /// Events found in both and written once.
    pub duplicates: u64,
    /// Archive files read.
    pub files: u64,
    /// Archive files not read because their manifest puts all their events outside the
    /// range.
    pub files_skipped: u64,
}

/// Why a range export failed. Nothing partial is left where the output goes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// Reading the store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Listing or reading the archive failed.
    #[error("archive: {0}")]
    Sink(#[from] SinkError),
    /// An archive file could not be decoded.
    #[error("archive file {key}: {problem}")]
    Archive {
        /// The object's key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Writing the output or a temporary run failed.
    #[error("output: {0}")]
    Io(#[from] io::Error),
}

/// One candidate: sorted by time, then identity, then origin (store first).
#[derive(Debug, Serialize, Deserialize)]
struct Item {
    t: i64,
    k: String,
    /// 0 = store, 1 = archive.
    o: u8,
    e: Event,
}

impl Item {
    /// `origin` is 0 for the store, 1 for the archive.
    fn new(event: Event, origin: u8, identity: &Identity) -> Self {
        Self {
            t: event.time,
            k: identity.key(&event),
            o: origin,
            e: event,
        }
    }

    fn order(&self, other: &Self) -> CmpOrdering {
        (self.t, &self.k, self.o).cmp(&(other.t, &other.k, other.o))
    }
}

/// How candidates are identified across store and archive.
enum Identity {
    Id,
    Content(Arc<dyn Schema>),
}

impl Identity {
    fn key(&self, event: &Event) -> String {
        match self {
            Identity::Id => event.id.clone(),
            Identity::Content(schema) => {
                let mut values = Vec::new();
                schema.render(event.clone(), &mut values);
                let text = serde_json::to_string(&values).unwrap_or_default();
                hex::encode(&Sha256::digest(text.as_bytes())[..16])
            }
        }
    }
}

/// True when `schema` writes the event id into its records.
fn carries_id(schema: &dyn Schema) -> bool {
    const PROBE: &str = "auditsync-id-probe-7f3a";
    let mut values = Vec::new();
    let event = Event {
        id: PROBE.into(),
        action: "probe".into(),
        ..Event::default()
    };
    schema.render(event, &mut values);
    values.iter().any(|v| v.as_str() == Some(PROBE))
}

/// Sorted runs spilled to temporary files.
struct Runs {
    pending: Vec<Item>,
    files: Vec<tempfile::NamedTempFile>,
}

impl Runs {
    fn new() -> Self {
        Self {
            pending: Vec::new(),
            files: Vec::new(),
        }
    }

    fn push(&mut self, item: Item) -> io::Result<()> {
        self.pending.push(item);
        if self.pending.len() >= RUN_EVENTS {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending.sort_by(Item::order);
        let file = tempfile::NamedTempFile::new()?;
        {
            let mut out = BufWriter::new(file.as_file());
            for item in self.pending.drain(..) {
                serde_json::to_writer(&mut out, &item)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        self.files.push(file);
        Ok(())
    }
}

struct Head {
    item: Item,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    // Reversed: BinaryHeap is a max-heap and the merge wants the smallest first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.item.order(&self.item).then(other.run.cmp(&self.run))
    }
}

fn read_item(reader: &mut impl BufRead) -> io::Result<Option<Item>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(io::Error::other)
}

/// Exports `query`'s events from `store` and `archive` into `out`, in `format`.
pub async fn export_range<W: Write + Send + 'static>(
    store: Arc<dyn Store>,
    archive: Option<Archive>,
    query: &RangeQuery,
    format: &FileFormat,
    out: W,
    progress: Arc<RangeProgress>,
) -> Result<(RangeReport, W), RangeError> {
    let identity = Arc::new(match &archive {
        Some(a) if !carries_id(a.schema.as_ref()) => Identity::Content(a.schema.clone()),
        _ => Identity::Id,
    });
    let query = Arc::new(query.clone());
    // Filtering, keying, sorting and spilling are CPU and disk work: they run off the async
    // threads (the service keeps taking events meanwhile), the runs moving in and out.
    let mut runs = Runs::new();
    let mut after = 0;
    loop {
        let page = store.read_after(after, u64::MAX, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        progress
            .scanned
            .fetch_add(page.len() as u64, Ordering::Relaxed);
        let (query, identity) = (query.clone(), identity.clone());
        runs = blocking(move || {
            for stored in page {
                if query.matches(&stored.event) {
                    runs.push(Item::new(stored.event, 0, &identity))?;
                }
            }
            Ok(runs)
        })
        .await?;
    }
    let mut skipped = 0;
    if let Some(archive) = &archive {
        let tree = format!("{}/audit/", archive.namespace);
        let mut listed = archive.sink.list(&tree).await?;
        // Manifests sit beside the files; they hold no events, but they know each file's
        // time bounds (a key carries only its earliest event's hour).
        let bounds = manifest_time_bounds(archive.sink.as_ref(), &listed).await?;
        listed.retain(|meta| !meta.key.as_str().contains("/_manifests/"));
        let before = listed.len();
        listed.retain(|meta| {
            bounds
                .get(meta.key.as_str())
                .is_none_or(|&(earliest, latest)| latest >= query.from_ms && earliest < query.to_ms)
        });
        skipped = (before - listed.len()) as u64;
        progress
            .files_total
            .store(listed.len() as u64, Ordering::Relaxed);
        for meta in listed {
            let body = archive.sink.get(&meta.key).await?;
            let (query, identity, progress) = (query.clone(), identity.clone(), progress.clone());
            let schema = archive.schema.clone();
            runs = blocking(move || {
                decode_file(meta.key.as_str(), &body, schema.as_ref(), |event| {
                    progress.scanned.fetch_add(1, Ordering::Relaxed);
                    if query.matches(&event) {
                        runs.push(Item::new(event, 1, &identity))?;
                    }
                    Ok(())
                })?;
                progress.files.fetch_add(1, Ordering::Relaxed);
                Ok(runs)
            })
            .await?;
        }
    }
    runs.spill()?;
    let format = format.clone();
    let by_id = matches!(*identity, Identity::Id);
    let files = progress.files.load(Ordering::Relaxed);
    let (mut report, out) = blocking(move || merge(runs, by_id, &format, out, &progress)).await?;
    report.files = files;
    report.files_skipped = skipped;
    Ok((report, out))
}

/// Each listed file's earliest and latest event time (epoch ms), from the manifests among
/// `listed` that record them. Unreadable manifests are passed over: their files are read.
async fn manifest_time_bounds(
    sink: &dyn Sink,
    listed: &[auditsync_core::ObjectMeta],
) -> Result<std::collections::HashMap<String, (i64, i64)>, RangeError> {
    let mut bounds = std::collections::HashMap::new();
    for meta in listed {
        let key = meta.key.as_str();
        let Some(at) = key.find("/audit/_manifests/") else {
            continue;
        };
        let Ok(manifest) = auditsync_manifest::Manifest::parse(&sink.get(&meta.key).await?) else {
            tracing::warn!(
                key,
                "unreadable manifest: its files are read whatever their times"
            );
            continue;
        };
        // Entry keys are relative to the destination's root, which is above the namespace.
        let root = key[..at].rfind('/').map_or("", |i| &key[..=i]);
        for entry in &manifest.entries {
            if let Some(times) = entry.time_bounds_ms() {
                bounds.insert(format!("{root}{}", entry.key), times);
            }
        }
    }
    Ok(bounds)
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RangeError> + Send + 'static,
) -> Result<T, RangeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RangeError::Io(io::Error::other(format!("range export task failed: {e}"))))?
}

fn merge<W: Write>(
    runs: Runs,
    by_id: bool,
    format: &FileFormat,
    out: W,
    progress: &RangeProgress,
) -> Result<(RangeReport, W), RangeError> {
    let mut readers: Vec<BufReader<std::fs::File>> = runs
        .files
        .iter()
        .map(|f| f.reopen().map(BufReader::new))
        .collect::<io::Result<_>>()?;
    let mut heap = BinaryHeap::new();
    for (run, reader) in readers.iter_mut().enumerate() {
        if let Some(item) = read_item(reader)? {
            heap.push(Head { item, run });
        }
    }
    let mut report = RangeReport::default();
    let mut compressed = format.compression.writer(BufWriter::new(out))?;
    {
        let columns = format.schema.columns().to_vec();
        let mut writer = format.formatter.begin(&columns, &mut compressed)?;
        let mut record = Vec::with_capacity(columns.len());
        let mut group: Vec<Item> = Vec::new();
        let mut flush = |group: &mut Vec<Item>,
                         writer: &mut Box<dyn auditsync_core::RecordWriter + '_>|
         -> io::Result<()> {
            let store_count = group.iter().filter(|i| i.o == 0).count();
            let archive_count = group.len() - store_count;
            let keep = if by_id {
                1
            } else {
                store_count.max(archive_count)
            };
            // Store events come first in a group: complete, where the archive's may lack
            // fields its schema does not carry.
            for item in group.drain(..).take(keep) {
                if item.o == 0 {
                    report.from_store += 1;
                } else {
                    report.from_archive += 1;
                }
                record.clear();
                format.schema.render(item.e, &mut record);
                writer.append(&record)?;
                report.events += 1;
                progress.written.fetch_add(1, Ordering::Relaxed);
            }
            report.duplicates += (store_count + archive_count - keep) as u64;
            Ok(())
        };
        while let Some(Head { item, run }) = heap.pop() {
            if let Some(next) = read_item(&mut readers[run])? {
                heap.push(Head { item: next, run });
            }
            let same = group
                .first()
                .is_some_and(|g| g.t == item.t && g.k == item.k);
            if !same && !group.is_empty() {
                flush(&mut group, &mut writer)?;
            }
            group.push(item);
        }
        if !group.is_empty() {
            flush(&mut group, &mut writer)?;
        }
        writer.finish()?;
    }
    let out = compressed
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())?;
    Ok((report, out))
}

/// Reads the events of one export file, streaming: decompressed by its suffix, records parsed
/// by its format (`.ndjson` or `.csv`) and mapped back through `schema`, each handed to `each`
/// as it is read (a file is never held decoded in memory).
pub fn decode_file(
    key: &str,
    body: &[u8],
    schema: &dyn Schema,
    mut each: impl FnMut(Event) -> Result<(), RangeError>,
) -> Result<(), RangeError> {
    let fail = |problem: String| RangeError::Archive {
        key: key.to_string(),
        problem,
    };
    let (stem, reader) = crate::Compression::reader_for(key, body)
        .map_err(|e| fail(format!("cannot decompress: {e}")))?;
    let formatter = auditsync_core::registry::formatter_for_file(stem).ok_or_else(|| {
        fail(format!(
            "not an export file of a linked format (known: {}), optionally .gz or .zst",
            auditsync_core::registry::formatter_names()
                .iter()
                .map(|f| format!(".{f}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let records = formatter
        .read(schema.columns(), Box::new(BufReader::new(reader)))
        .map_err(|e| fail(e.to_string()))?;
    for (i, record) in records.enumerate() {
        let record = record.map_err(|e| fail(e.to_string()))?;
        let event = schema
            .parse(Value::Object(record))
            .map_err(|e| fail(format!("record {}: {e}", i + 1)))?;
        each(event)?;
    }
    Ok(())
}
