//! Writes each destination's manifest chain: after an export, the files it completed since the
//! last manifest are listed in a new one, signed and linked to the previous one, beside the
//! files (`<namespace>/audit/_manifests/`). A destination with nothing new still gets one when
//! the last is older than the interval, so that a cut-off tail is bounded in time.
//!
//! The list comes from the store's batch records, not from this run's uploads: files a
//! crashed run completed are listed by the next one, and files exported before manifests
//! were turned on are listed by the first (the chain always starts at sequence 0).

use std::sync::Arc;
use std::time::Duration;

use auditsync_core::{ObjectKey, PutOptions, PutOutcome};
use auditsync_manifest::{
    encode, manifest_key, FileEntry, Header, KeyRing, Link, Manifest, ManifestSigner, PublicKey,
    SignatureCheck,
};
use auditsync_store::{Batch, ManifestRecord};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::export::{relative_batch_key, Destination, ExportError};

/// At most this many files per manifest (a manifest line is about 400 bytes): a first
/// manifest over a long history is split into several.
pub const MAX_FILES_PER_MANIFEST: usize = 10_000;

/// Default time after which a destination with nothing new gets a manifest anyway.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// How manifests are written.
#[derive(Debug, Clone)]
pub struct ManifestSettings {
    /// Signs every manifest.
    pub signer: Arc<ManifestSigner>,
    /// Announced in every manifest as the next key (for a rotation), if set.
    pub next_key: Option<PublicKey>,
    /// A manifest is written at least this often, even when no file was.
    pub interval: Duration,
}

/// What one destination's manifests did in a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ManifestReport {
    /// Manifests written (or found already written by a run cut off before recording them).
    pub written: u64,
    /// Files they list.
    pub files: u64,
}

/// The manifest entry of a completed batch. Format and compression come from the key's
/// extension (a batch keeps the one it was written with); the schema is the destination's.
fn entry_of(batch: &Batch, dest: &Destination) -> FileEntry {
    let key = relative_batch_key(&batch.key);
    let name = key.rsplit('/').next().unwrap_or_default();
    let mut parts = name.split('.').skip(1);
    let format = parts.next().unwrap_or_default().to_string();
    let compression = match parts.next() {
        Some("gz") => "gzip",
        Some("zst") => "zstd",
        _ => "none",
    };
    FileEntry {
        key,
        bytes: batch.bytes,
        sha256: batch.sha256.clone(),
        events: batch.events,
        first_seq: batch.first_seq,
        last_seq: batch.last_seq,
        earliest: batch.earliest_ms.map(auditsync_manifest::model::rfc3339_ms),
        latest: batch.latest_ms.map(auditsync_manifest::model::rfc3339_ms),
        schema: dest.format.schema.name().to_string(),
        schema_version: dest.format.schema.version(),
        format,
        compression: compression.to_string(),
    }
}

/// Writes the destination's due manifests. The caller holds the destination's export lease,
/// so one writer extends a chain at a time (the store refuses a fork anyway).
pub async fn write_due(
    store: &dyn auditsync_store::Store,
    namespace: &str,
    dest: &Destination,
    settings: &ManifestSettings,
) -> Result<ManifestReport, ExportError> {
    let mut report = ManifestReport::default();
    let mut head = store.manifest_head(&dest.name).await?;
    loop {
        let after = head.as_ref().map_or(0, |h| h.last_seq);
        let batches = store
            .completed_batches(&dest.name, after, MAX_FILES_PER_MANIFEST)
            .await?;
        let now = chrono::Utc::now().timestamp_millis();
        let stale = head
            .as_ref()
            .is_none_or(|h| now - h.created_ms >= settings.interval.as_millis() as i64);
        if batches.is_empty() && !stale {
            return Ok(report);
        }
        // One more look after each manifest: a long history takes several, and an adopted
        // one (see `write_one`) may list fewer files than were found.
        let (record, files) = write_one(
            store,
            namespace,
            dest,
            settings,
            head.as_ref(),
            &batches,
            now,
        )
        .await?;
        report.written += 1;
        report.files += files;
        head = Some(record);
    }
}

async fn write_one(
    store: &dyn auditsync_store::Store,
    namespace: &str,
    dest: &Destination,
    settings: &ManifestSettings,
    head: Option<&ManifestRecord>,
    batches: &[Batch],
    now: i64,
) -> Result<(ManifestRecord, u64), ExportError> {
    let number = head.map_or(1, |h| h.number + 1);
    let after_seq = head.map_or(0, |h| h.last_seq);
    let previous = head.map(|h| Link {
        key: h.key.clone(),
        sha256: h.sha256.clone(),
    });
    let header = Header {
        format: String::new(),
        destination: dest.name.clone(),
        namespace: namespace.to_string(),
        number,
        created: auditsync_manifest::model::rfc3339_ms(now),
        previous: previous.clone(),
        after_seq,
        last_seq: batches.last().map_or(after_seq, |b| b.last_seq),
        files: 0,
        events: 0,
        merkle_root: String::new(),
        key_id: String::new(),
        next_key: settings.next_key.as_ref().map(PublicKey::to_base64),
    };
    let entries: Vec<FileEntry> = batches.iter().map(|b| entry_of(b, dest)).collect();
    let mut bytes = encode(header, &entries, &settings.signer);
    let key = ObjectKey::new(manifest_key(namespace, number))?;
    let options = PutOptions::default().with_content_type("application/x-ndjson");
    let outcome = dest
        .sink
        .put_opts(&key, Bytes::from(bytes.clone()), &options)
        .await?;
    if outcome == PutOutcome::AlreadyExists {
        // A run cut off between the upload and the record below: the manifest there is ours
        // if our key signed it and it follows our head; it then stands for this one.
        let existing = dest.sink.get(&key).await?;
        let ring = KeyRing::new([settings.signer.public_key()]);
        let ours = Manifest::parse(&existing).is_ok_and(|m| {
            m.check_signature(&ring) == SignatureCheck::Valid
                && m.header.previous == previous
                && m.header.after_seq == after_seq
                && m.header.destination == dest.name
        });
        if !ours {
            return Err(ExportError::Conflict {
                key: dest.sink.backend_key(&key),
                message: "a manifest that this destination's key did not sign, or that does not follow its chain, is already there. Nothing was overwritten".into(),
            });
        }
        tracing::info!(destination = %dest.name, key = %dest.sink.backend_key(&key), "adopting a manifest written before a restart");
        bytes = existing.to_vec();
    }
    let parsed = Manifest::parse(&bytes).map_err(|e| ExportError::Conflict {
        key: dest.sink.backend_key(&key),
        message: e.to_string(),
    })?;
    let record = ManifestRecord {
        destination: dest.name.clone(),
        number,
        key: key.to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        last_seq: parsed.header.last_seq,
        created_ms: now,
    };
    store.record_manifest(&record).await?;
    tracing::info!(
        destination = %dest.name,
        key = %dest.sink.backend_key(&key),
        number,
        files = parsed.header.files,
        last_seq = parsed.header.last_seq,
        "wrote manifest"
    );
    Ok((record, parsed.header.files))
}
