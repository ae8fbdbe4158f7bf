//! Bucket-to-bucket sync: copies what the target lacks, never deletes or overwrites.
//!
//! Both sides are listed; a source key missing in the target is read, written with
//! create-if-absent, and read back to check its size and SHA-256 against the source's. A key
//! on both sides is compared (size, then SHA-256 of both); different bytes are a conflict,
//! reported and left alone. Since every write is create-if-absent and atomic, a sync killed
//! halfway is resumed by running it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use auditsync_core::{ObjectKey, ObjectMeta, PutOutcome, Sink, SinkError};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// What a sync run does.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Only keys starting with this.
    pub prefix: String,
    /// Plan only: list and compare, copy nothing.
    pub dry_run: bool,
    /// Objects copied at once.
    pub concurrency: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            dry_run: false,
            concurrency: 8,
        }
    }
}

/// A key whose bytes differ between the two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The key.
    pub key: String,
    /// Source size and SHA-256 (hex).
    pub source: (u64, String),
    /// Target size and SHA-256 (hex).
    pub target: (u64, String),
}

/// What a sync run found and did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Objects listed in the source.
    pub source_objects: u64,
    /// Objects the target lacked (copied, or to copy in a dry run).
    pub missing: u64,
    /// Objects copied and verified.
    pub copied: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Objects already in the target with the same bytes.
    pub identical: u64,
    /// Keys on both sides with different bytes, left alone.
    pub conflicts: Vec<Conflict>,
    /// Failures, one line each (the key and the reason).
    pub errors: Vec<String>,
}

impl SyncReport {
    /// True when nothing conflicted and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.conflicts.is_empty() && self.errors.is_empty()
    }
}

/// Progress, updated while a sync runs (for a progress bar or metrics).
#[derive(Debug, Default)]
pub struct SyncProgress {
    /// Objects to copy, known after listing.
    pub total: AtomicU64,
    /// Objects done (copied, or failed).
    pub done: AtomicU64,
    /// Bytes copied so far.
    pub bytes: AtomicU64,
}

/// (size, SHA-256) of objects already verified equal, so that a scheduled sync does not read
/// both sides of every object again on each run.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    known: Mutex<HashMap<String, u64>>,
}

impl VerifiedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn contains(&self, key: &str, size: u64) -> bool {
        self.lock().get(key) == Some(&size)
    }
    fn insert(&self, key: &str, size: u64) {
        self.lock().insert(key.to_string(), size);
    }
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Runs one sync from `source` to `target`.
pub async fn sync(
    source: Arc<dyn Sink>,
    target: Arc<dyn Sink>,
    options: &SyncOptions,
    progress: Arc<SyncProgress>,
    cache: Arc<VerifiedCache>,
) -> Result<SyncReport, SinkError> {
    let source_list = source.list(&options.prefix).await?;
    let target_list: HashMap<String, u64> = target
        .list(&options.prefix)
        .await?
        .into_iter()
        .map(|m| (m.key.as_str().to_string(), m.size))
        .collect();
    let mut report = SyncReport {
        source_objects: source_list.len() as u64,
        ..SyncReport::default()
    };
    let mut to_copy: Vec<ObjectMeta> = Vec::new();
    let mut to_compare: Vec<(ObjectMeta, u64)> = Vec::new();
    for meta in source_list {
        match target_list.get(meta.key.as_str()) {
            None => to_copy.push(meta),
            Some(&size) if size == meta.size && cache.contains(meta.key.as_str(), size) => {
                report.identical += 1
            }
            Some(&size) => to_compare.push((meta, size)),
        }
    }
    report.missing = to_copy.len() as u64;
    progress
        .total
        .store((to_copy.len() + to_compare.len()) as u64, Ordering::Relaxed);
    let limit = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let sides = Arc::new(Sides {
        source,
        target,
        cache,
        progress,
    });
    let copies = if options.dry_run { Vec::new() } else { to_copy };
    let work = to_compare
        .into_iter()
        .map(|(meta, size)| Work::Compare(meta, size))
        .chain(copies.into_iter().map(Work::Copy));
    let mut tasks = tokio::task::JoinSet::new();
    for item in work {
        let (sides, limit) = (sides.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let step = sides.run(item).await;
            sides.progress.done.fetch_add(1, Ordering::Relaxed);
            step
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (key, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                report.errors.push(format!("a copy task failed: {e}"));
                continue;
            }
        };
        match outcome {
            Ok(Outcome::Identical) => report.identical += 1,
            Ok(Outcome::Conflict(conflict)) => report.conflicts.push(conflict),
            Ok(Outcome::Copied(bytes)) => {
                report.copied += 1;
                report.copied_bytes += bytes;
            }
            Err(e) => report.errors.push(format!("{}: {e}", key.as_str())),
        }
    }
    report.conflicts.sort_by(|a, b| a.key.cmp(&b.key));
    report.errors.sort();
    Ok(report)
}

/// Both sides of a sync and what its tasks share.
struct Sides {
    source: Arc<dyn Sink>,
    target: Arc<dyn Sink>,
    cache: Arc<VerifiedCache>,
    progress: Arc<SyncProgress>,
}

enum Work {
    /// A key on both sides (with the target's size).
    Compare(ObjectMeta, u64),
    /// A key the target lacks.
    Copy(ObjectMeta),
}

impl Sides {
    async fn run(&self, work: Work) -> (ObjectKey, Result<Outcome, SinkError>) {
        let (source, target, cache) = (&*self.source, &*self.target, &*self.cache);
        match work {
            Work::Compare(meta, size) => {
                let outcome = compare(source, target, &meta, size, cache).await;
                (meta.key, outcome)
            }
            Work::Copy(meta) => {
                let outcome = copy(source, target, &meta, cache).await;
                if let Ok(Outcome::Copied(bytes)) = &outcome {
                    self.progress.bytes.fetch_add(*bytes, Ordering::Relaxed);
                }
                (meta.key, outcome)
            }
        }
    }
}

/// What became of one key.
enum Outcome {
    /// Both sides hold the same bytes (found so, or another writer created the key between
    /// listing and writing, with the same bytes).
    Identical,
    /// Both sides hold different bytes; left alone.
    Conflict(Conflict),
    /// Written and verified; the byte count.
    Copied(u64),
}

async fn compare(
    source: &dyn Sink,
    target: &dyn Sink,
    meta: &ObjectMeta,
    target_size: u64,
    cache: &VerifiedCache,
) -> Result<Outcome, SinkError> {
    let source_body = source.get(&meta.key).await?;
    let source_sha = sha256_hex(&source_body);
    let target_body = target.get(&meta.key).await?;
    let target_sha = sha256_hex(&target_body);
    if source_body.len() == target_body.len() && source_sha == target_sha {
        cache.insert(meta.key.as_str(), target_size);
        return Ok(Outcome::Identical);
    }
    Ok(Outcome::Conflict(Conflict {
        key: meta.key.as_str().to_string(),
        source: (source_body.len() as u64, source_sha),
        target: (target_body.len() as u64, target_sha),
    }))
}

async fn copy(
    source: &dyn Sink,
    target: &dyn Sink,
    meta: &ObjectMeta,
    cache: &VerifiedCache,
) -> Result<Outcome, SinkError> {
    let body: Bytes = source.get(&meta.key).await?;
    let size = body.len() as u64;
    if size != meta.size {
        return Err(SinkError::new(
            auditsync_core::SinkOp::Get,
            auditsync_core::ErrorKind::Conflict,
            format!(
                "the source object changed while syncing: listed {} bytes, read {size}",
                meta.size
            ),
        )
        .with_key(meta.key.as_str()));
    }
    let sha = sha256_hex(&body);
    match target.put(&meta.key, body).await? {
        PutOutcome::Created => {}
        // Another writer created the key between listing and writing: compare instead.
        PutOutcome::AlreadyExists => return compare(source, target, meta, size, cache).await,
    }
    verify_copy(target, &meta.key, size, &sha).await?;
    cache.insert(meta.key.as_str(), size);
    Ok(Outcome::Copied(size))
}

async fn verify_copy(
    target: &dyn Sink,
    key: &ObjectKey,
    size: u64,
    sha: &str,
) -> Result<(), SinkError> {
    let written = target.get(key).await?;
    let written_sha = sha256_hex(&written);
    if written.len() as u64 != size || written_sha != sha {
        return Err(SinkError::new(
            auditsync_core::SinkOp::Get,
            auditsync_core::ErrorKind::Conflict,
            format!(
                "the copy does not match the source: {} bytes, sha256 {written_sha}; source {size} bytes, sha256 {sha}",
                written.len()
            ),
        )
        .with_key(key.as_str()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(root: &std::path::Path) -> Arc<dyn Sink> {
        let options = serde_json::json!({"root": root});
        auditsync_pv::link();
        auditsync_core::registry::build_sink("pv", options.as_object().unwrap()).unwrap()
    }

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    #[tokio::test]
    async fn copies_what_is_missing_reports_conflicts_and_is_idempotent() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (pv(a.path()), pv(b.path()));
        for i in 0..30 {
            let body = Bytes::from(format!("object {i}\n").repeat(i + 1));
            source
                .put(&key(&format!("ns/audit/{i:02}.ndjson")), body)
                .await
                .unwrap();
        }
        source.put(&key("other/x"), Bytes::from("x")).await.unwrap();
        // One key already there with the same bytes, one with different bytes (same size).
        target
            .put(
                &key("ns/audit/03.ndjson"),
                Bytes::from("object 3\n".repeat(4)),
            )
            .await
            .unwrap();
        target
            .put(
                &key("ns/audit/04.ndjson"),
                Bytes::from("OBJECT 4\n".repeat(5)),
            )
            .await
            .unwrap();
        let options = SyncOptions {
            prefix: "ns/".into(),
            concurrency: 4,
            ..SyncOptions::default()
        };
        let cache = Arc::new(VerifiedCache::default());
        let dry = sync(
            source.clone(),
            target.clone(),
            &SyncOptions {
                dry_run: true,
                ..options.clone()
            },
            Arc::default(),
            cache.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            (dry.missing, dry.copied, dry.identical, dry.conflicts.len()),
            (28, 0, 1, 1)
        );
        assert_eq!(
            target.list("").await.unwrap().len(),
            2,
            "a dry run writes nothing"
        );

        let progress = Arc::new(SyncProgress::default());
        let report = sync(
            source.clone(),
            target.clone(),
            &options,
            progress.clone(),
            cache.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            (report.source_objects, report.copied, report.identical),
            (30, 28, 1)
        );
        assert_eq!(report.conflicts.len(), 1);
        assert_eq!(report.conflicts[0].key, "ns/audit/04.ndjson");
        assert_ne!(report.conflicts[0].source.1, report.conflicts[0].target.1);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        // 28 copies and the conflicting key; the identical one was verified by the dry run.
        assert_eq!(progress.done.load(Ordering::Relaxed), 29);
        assert_eq!(
            target.get(&key("ns/audit/04.ndjson")).await.unwrap(),
            Bytes::from("OBJECT 4\n".repeat(5)),
            "a conflict is left alone"
        );
        assert!(
            target.list("other/").await.unwrap().is_empty(),
            "outside the prefix"
        );
        for i in [0usize, 17, 29] {
            let k = key(&format!("ns/audit/{i:02}.ndjson"));
            assert_eq!(target.get(&k).await.unwrap(), source.get(&k).await.unwrap());
        }
        let again = sync(source, target, &options, Arc::default(), cache)
            .await
            .unwrap();
        assert_eq!(
            (again.copied, again.identical, again.conflicts.len()),
            (0, 29, 1)
        );
    }
}
