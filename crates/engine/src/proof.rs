//! Inclusion proofs of single records: the signed header of the manifest that lists the
//! record's file, that file's line in the manifest, and the Merkle path from the line to the
//! header's root. An auditor checks one record with the proof, a trusted public key and, to
//! see the record itself in the file, that one file: not the archive.

use std::io::{BufRead, BufReader};

use auditsync_core::{ObjectKey, Sink, SinkError};
use auditsync_manifest::merkle::{self, Hash};
use auditsync_manifest::{
    check_header_signature, FileEntry, Header, KeyRing, Manifest, SignatureCheck, SignatureLine,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `format` of a proof.
pub const FORMAT: &str = "auditsync-proof/1";

/// A record's inclusion proof (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// [`FORMAT`].
    pub format: String,
    /// The manifest's key.
    pub manifest_key: String,
    /// The manifest's line 1, exactly: what the signature covers.
    pub header: String,
    /// The manifest's line 2, exactly.
    pub signature: String,
    /// The file's line in the manifest, exactly: the Merkle leaf.
    pub entry: String,
    /// The leaf's position among the manifest's file lines, from 0.
    pub index: u64,
    /// The sibling hashes from the leaf to the root, lowercase hex.
    pub path: Vec<String>,
    /// The record's position in the file, from 1.
    pub record_number: u64,
    /// The record: its NDJSON line exactly, or for other formats its fields as JSON.
    pub record: String,
}

/// Why a proof cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Reading the archive failed.
    #[error("{0}")]
    Sink(#[from] SinkError),
    /// No manifest lists the file, or the file lacks the record.
    #[error("{0}")]
    NotFound(String),
}

/// What a checked proof established.
#[derive(Debug, Clone)]
pub struct Proven {
    /// The signed header.
    pub header: Header,
    /// The file line it covers.
    pub entry: FileEntry,
}

/// Makes the proof of record `record_number` (from 1) of the file at `file_key` (relative to
/// the sink's root), from the manifest that lists it.
pub async fn prove(
    sink: &dyn Sink,
    namespace: &str,
    file_key: &str,
    record_number: u64,
) -> Result<Proof, ProofError> {
    let dir = format!("{namespace}/audit/{}/", auditsync_manifest::model::DIR);
    // Newest first: a proof is usually wanted for a recent record.
    for meta in sink.list(&dir).await?.iter().rev() {
        let Ok(manifest) = Manifest::parse(&sink.get(&meta.key).await?) else {
            continue;
        };
        let Some(index) = manifest.entries.iter().position(|e| e.key == file_key) else {
            continue;
        };
        let leaves = manifest.leaves();
        let file = ObjectKey::new(file_key)
            .map_err(|e| ProofError::NotFound(format!("`{file_key}`: {e}")))?;
        let body = sink.get(&file).await?;
        let record = nth_record(
            file_key,
            &body,
            &manifest.entries[index].schema,
            record_number,
        )
        .map_err(ProofError::NotFound)?;
        return Ok(Proof {
            format: FORMAT.into(),
            manifest_key: meta.key.as_str().to_string(),
            header: manifest.header_line.clone(),
            signature: serde_json::to_string(&manifest.signature).unwrap_or_default(),
            entry: manifest.entry_lines[index].clone(),
            index: index as u64,
            path: merkle::audit_path(&leaves, index)
                .iter()
                .map(hex::encode)
                .collect(),
            record_number,
            record,
        });
    }
    Err(ProofError::NotFound(format!(
        "no manifest under `{dir}` lists `{file_key}`"
    )))
}

/// Checks a proof against the trusted keys: the signature over the header, and the path
/// from the file line to the header's root.
pub fn check(proof: &Proof, keys: &KeyRing) -> Result<Proven, String> {
    if proof.format != FORMAT {
        return Err(format!("format `{}` is not `{FORMAT}`", proof.format));
    }
    let header: Header = serde_json::from_str(&proof.header).map_err(|e| format!("header: {e}"))?;
    let signature: SignatureLine =
        serde_json::from_str(&proof.signature).map_err(|e| format!("signature: {e}"))?;
    match check_header_signature(&proof.header, &header, &signature, keys) {
        SignatureCheck::Valid => {}
        SignatureCheck::Bad => return Err("the signature does not match the header".into()),
        SignatureCheck::UnknownKey => {
            return Err(format!(
                "signed by key {}, which is not trusted",
                header.key_id
            ))
        }
    }
    let path = proof
        .path
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| format!("path: `{h}` is not a SHA-256 in hex"))
        })
        .collect::<Result<Vec<Hash>, String>>()?;
    let leaf = merkle::leaf_hash(proof.entry.as_bytes());
    let root = merkle::root_from_path(leaf, proof.index, header.files, &path)
        .ok_or("the path does not fit the leaf's position in the tree")?;
    if hex::encode(root) != header.merkle_root {
        return Err("the file line and path do not lead to the signed Merkle root".into());
    }
    let entry: FileEntry = serde_json::from_str(&proof.entry).map_err(|e| format!("entry: {e}"))?;
    Ok(Proven { header, entry })
}

/// Checks the proven file's bytes and the record in them.
pub fn check_file(proof: &Proof, proven: &Proven, body: &[u8]) -> Result<(), String> {
    let sha = hex::encode(Sha256::digest(body));
    if sha != proven.entry.sha256 {
        return Err(format!(
            "the file's sha256 is {sha}; the manifest records {}",
            proven.entry.sha256
        ));
    }
    let record = nth_record(
        &proven.entry.key,
        body,
        &proven.entry.schema,
        proof.record_number,
    )?;
    if record != proof.record {
        return Err(format!(
            "record {} of the file differs from the proof's",
            proof.record_number
        ));
    }
    Ok(())
}

/// Record `n` (from 1) of an export file, as [`Proof::record`] holds it.
fn nth_record(key: &str, body: &[u8], schema: &str, n: u64) -> Result<String, String> {
    let missing = || format!("`{key}` has no record {n}");
    if n == 0 {
        return Err(missing());
    }
    let (stem, reader) = crate::Compression::reader_for(key, body).map_err(|e| e.to_string())?;
    if stem.ends_with(".ndjson") {
        return BufReader::new(reader)
            .lines()
            .nth(n as usize - 1)
            .ok_or_else(missing)?
            .map_err(|e| e.to_string());
    }
    let formatter = auditsync_core::registry::formatter_for_file(stem)
        .ok_or_else(|| format!("no linked format reads `{key}`"))?;
    let schema = auditsync_core::registry::build_schema(schema).map_err(|e| e.to_string())?;
    let record = formatter
        .read(schema.columns(), Box::new(BufReader::new(reader)))
        .map_err(|e| e.to_string())?
        .nth(n as usize - 1)
        .ok_or_else(missing)?
        .map_err(|e| e.to_string())?;
    serde_json::to_string(&record).map_err(|e| e.to_string())
}

/// Where the event with `id` is in `destination`'s files: the file's key (relative to the
/// destination's root) and the record's number in it. The event must still be in the store:
/// its position is counted back from the file's end over the events after it, which GC
/// (deleting only a prefix) has not touched while the event itself is held.
pub async fn locate_event(
    store: &dyn auditsync_store::Store,
    destination: &str,
    id: &str,
) -> Result<(String, u64), ProofError> {
    let not_found = |m: String| ProofError::NotFound(m);
    let store_error = |e: auditsync_store::StoreError| not_found(format!("store: {e}"));
    let seq = store
        .seq_of(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(format!("no event with id `{id}` is in the store")))?;
    let held_from = store.stats().await.map_err(store_error)?.first_seq;
    if held_from.is_none_or(|first| first > seq) {
        return Err(not_found(format!(
            "event `{id}` (seq {seq}) was collected from the store; prove it by its file and record number instead (--file KEY --record N)"
        )));
    }
    const PAGE: usize = 1_000;
    let mut after = 0;
    let batch = loop {
        let page = store
            .completed_batches(destination, after, PAGE)
            .await
            .map_err(store_error)?;
        if let Some(b) = page
            .iter()
            .find(|b| b.first_seq <= seq && seq <= b.last_seq)
        {
            break b.clone();
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.first_seq,
            _ => {
                return Err(not_found(format!(
                    "event `{id}` (seq {seq}) is not in a file of `{destination}` yet: export first"
                )))
            }
        }
    };
    let later = store
        .read_after(seq, batch.last_seq, batch.events as usize)
        .await
        .map_err(store_error)?
        .len() as u64;
    Ok((
        crate::export::relative_batch_key(&batch.key),
        batch.events - later,
    ))
}
