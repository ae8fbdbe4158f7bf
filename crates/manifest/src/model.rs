//! The manifest file: NDJSON, one JSON object per line.
//!
//! 1. The header: which destination, its number in the chain, the previous manifest's key
//!    and SHA-256, the sequence range covered, the Merkle root of the file entries, the
//!    signing key's id and, optionally, the next key.
//! 2. The signature: Ed25519 over the exact bytes of line 1 (without its newline).
//! 3. One line per file, in export order: the Merkle tree's leaves are these lines' bytes.
//!
//! Signing the stored bytes of one line, rather than a canonical form of a structure,
//! leaves nothing to canonicalize: an auditor checks a signature with `head -1` and openssl.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{KeyRing, ManifestSigner, PublicKey};
use crate::merkle::{self, Hash};

/// The `format` of every manifest this version writes.
pub const FORMAT: &str = "auditsync-manifest/1";
/// The folder of a namespace's manifests, beside its `yyyy/` folders under `audit/`.
pub const DIR: &str = "_manifests";
/// The suffix of a manifest's key.
pub const SUFFIX: &str = ".manifest.ndjson";

/// `<namespace>/audit/_manifests/<number, 20 digits>.manifest.ndjson`: keys sort in chain
/// order, and `aws s3 sync` or a copy of the tree takes them along with the files.
pub fn manifest_key(namespace: &str, number: u64) -> String {
    format!("{namespace}/audit/{DIR}/{number:020}{SUFFIX}")
}

/// The chain number in a manifest key, if it is one.
pub fn number_in_key(key: &str) -> Option<u64> {
    let (dir, name) = key.rsplit_once('/')?;
    if !dir.ends_with(&format!("/audit/{DIR}")) {
        return None;
    }
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// UTC, RFC 3339 with milliseconds: how manifests write times.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The previous manifest of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Its key, relative to the destination's root.
    pub key: String,
    /// Lowercase hex SHA-256 of its bytes.
    pub sha256: String,
}

/// Line 1 of a manifest: what the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// [`FORMAT`].
    pub format: String,
    /// The destination's name: one chain per destination.
    pub destination: String,
    /// The namespace of the files.
    pub namespace: String,
    /// Position in the chain, from 1.
    pub number: u64,
    /// When it was written (UTC, RFC 3339).
    pub created: String,
    /// The previous manifest; `null` only for number 1.
    pub previous: Option<Link>,
    /// The range covered is `after_seq < seq <= last_seq`; `after_seq` is the previous
    /// manifest's `last_seq` (0 for the first).
    pub after_seq: u64,
    /// The last sequence number covered.
    pub last_seq: u64,
    /// How many file lines follow the signature.
    pub files: u64,
    /// Events in those files.
    pub events: u64,
    /// Lowercase hex Merkle root of the file lines (see [`crate::merkle`]).
    pub merkle_root: String,
    /// The id of the key that signs this header.
    pub key_id: String,
    /// The next signing key (base64 of its 32 raw bytes), announced under this key's
    /// signature: a verifier that trusts this key trusts the next one from here on.
    pub next_key: Option<String>,
}

/// Line 2 of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureLine {
    /// The signing key's id (as in the header).
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// Base64 Ed25519 signature of line 1's bytes.
    pub signature: String,
}

/// One exported file, as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The file's key, relative to the destination's root.
    pub key: String,
    /// Its size in bytes, as stored (compressed).
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// Records in it.
    pub events: u64,
    /// Its first sequence number.
    pub first_seq: u64,
    /// Its last sequence number.
    pub last_seq: u64,
    /// Its earliest event time (UTC, RFC 3339), when recorded.
    pub earliest: Option<String>,
    /// Its latest event time, when recorded.
    pub latest: Option<String>,
    /// The schema that rendered its records.
    pub schema: String,
    /// That schema's version.
    pub schema_version: u32,
    /// The record format (`ndjson`, `csv`).
    pub format: String,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
}

impl FileEntry {
    /// Its earliest and latest event time in epoch ms, when both are recorded.
    pub fn time_bounds_ms(&self) -> Option<(i64, i64)> {
        let ms = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis())
        };
        Some((ms(&self.earliest)?, ms(&self.latest)?))
    }
}

/// A manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A line is missing or is not what it should be.
    #[error("line {line}: {problem}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// A manifest read back, with the exact lines it was made of.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Line 1, parsed.
    pub header: Header,
    /// Line 1 as stored: the signed bytes.
    pub header_line: String,
    /// Line 2.
    pub signature: SignatureLine,
    /// The file lines, parsed.
    pub entries: Vec<FileEntry>,
    /// The file lines as stored: the Merkle leaves.
    pub entry_lines: Vec<String>,
    /// Lowercase hex SHA-256 of the whole manifest: the next one links to it.
    pub sha256: String,
}

/// What a manifest's signature says against a set of trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Signed by this trusted key.
    Valid,
    /// The key is trusted but the signature does not match the header.
    Bad,
    /// Signed (or claimed) by a key that is not trusted.
    UnknownKey,
}

/// Checks a header line's signature against the trusted keys (`header` is that line parsed).
pub fn check_header_signature(
    header_line: &str,
    header: &Header,
    signature: &SignatureLine,
    ring: &KeyRing,
) -> SignatureCheck {
    if signature.key_id != header.key_id || signature.algorithm != "ed25519" {
        return SignatureCheck::Bad;
    }
    match ring.get(&header.key_id) {
        None => SignatureCheck::UnknownKey,
        Some(key) if key.verifies(header_line.as_bytes(), &signature.signature) => {
            SignatureCheck::Valid
        }
        Some(_) => SignatureCheck::Bad,
    }
}

fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("manifest lines always serialize")
}

/// Writes a manifest: fills the header's `files`, `events`, `merkle_root` and `key_id` from
/// `entries` and `signer`, signs it, and returns the bytes to store.
pub fn encode(mut header: Header, entries: &[FileEntry], signer: &ManifestSigner) -> Vec<u8> {
    let entry_lines: Vec<String> = entries.iter().map(json_line).collect();
    let leaves: Vec<Hash> = entry_lines
        .iter()
        .map(|l| merkle::leaf_hash(l.as_bytes()))
        .collect();
    header.format = FORMAT.to_string();
    header.files = entries.len() as u64;
    header.events = entries.iter().map(|e| e.events).sum();
    header.merkle_root = hex::encode(merkle::root(&leaves));
    header.key_id = signer.key_id().to_string();
    let header_line = json_line(&header);
    let signature = SignatureLine {
        key_id: signer.key_id().to_string(),
        algorithm: "ed25519".into(),
        signature: signer.sign(header_line.as_bytes()),
    };
    let mut out = header_line;
    out.push('\n');
    out.push_str(&json_line(&signature));
    out.push('\n');
    for line in entry_lines {
        out.push_str(&line);
        out.push('\n');
    }
    out.into_bytes()
}

impl Manifest {
    /// Reads a manifest's bytes. Its signature and root are not checked here.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let malformed = |line: usize, problem: String| ManifestError::Malformed { line, problem };
        let text =
            std::str::from_utf8(bytes).map_err(|e| malformed(0, format!("not UTF-8: {e}")))?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed(0, "does not end with a newline".into()))?;
        let mut lines = body.split('\n');
        let header_line = lines.next().unwrap_or_default().to_string();
        let header: Header = serde_json::from_str(&header_line)
            .map_err(|e| malformed(1, format!("not a manifest header: {e}")))?;
        if header.format != FORMAT {
            return Err(malformed(
                1,
                format!("format `{}` is not `{FORMAT}`", header.format),
            ));
        }
        let signature: SignatureLine = serde_json::from_str(lines.next().unwrap_or_default())
            .map_err(|e| malformed(2, format!("not a signature line: {e}")))?;
        let mut entries = Vec::new();
        let mut entry_lines = Vec::new();
        for (i, line) in lines.enumerate() {
            let entry: FileEntry = serde_json::from_str(line)
                .map_err(|e| malformed(i + 3, format!("not a file entry: {e}")))?;
            entries.push(entry);
            entry_lines.push(line.to_string());
        }
        if entries.len() as u64 != header.files {
            return Err(malformed(
                1,
                format!(
                    "the header counts {} files, {} lines follow",
                    header.files,
                    entries.len()
                ),
            ));
        }
        Ok(Self {
            header,
            header_line,
            signature,
            entries,
            entry_lines,
            sha256: hex::encode(Sha256::digest(bytes)),
        })
    }

    /// The Merkle leaves: the hashes of the file lines.
    pub fn leaves(&self) -> Vec<Hash> {
        self.entry_lines
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect()
    }

    /// Whether the header's root is the root of the file lines that follow.
    pub fn root_matches(&self) -> bool {
        hex::encode(merkle::root(&self.leaves())) == self.header.merkle_root
    }

    /// Checks the signature against the trusted keys.
    pub fn check_signature(&self, ring: &KeyRing) -> SignatureCheck {
        check_header_signature(&self.header_line, &self.header, &self.signature, ring)
    }

    /// The next key this manifest announces, if any.
    pub fn next_key(&self) -> Option<Result<PublicKey, crate::keys::KeyError>> {
        self.header
            .next_key
            .as_deref()
            .map(|k| PublicKey::from_base64(k, "the manifest's next_key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> FileEntry {
        FileEntry {
            key: format!("acme/audit/2026/01/01/00/{i:020}-{i:020}.ndjson"),
            bytes: 10 + i,
            sha256: hex::encode(Sha256::digest(i.to_be_bytes())),
            events: 1,
            first_seq: i,
            last_seq: i,
            earliest: Some(rfc3339_ms(0)),
            latest: Some(rfc3339_ms(0)),
            schema: "uevents".into(),
            schema_version: 1,
            format: "ndjson".into(),
            compression: "none".into(),
        }
    }

    fn header() -> Header {
        Header {
            format: String::new(),
            destination: "archive".into(),
            namespace: "acme".into(),
            number: 1,
            created: rfc3339_ms(0),
            previous: None,
            after_seq: 0,
            last_seq: 3,
            files: 0,
            events: 0,
            merkle_root: String::new(),
            key_id: String::new(),
            next_key: None,
        }
    }

    #[test]
    fn a_written_manifest_reads_back_signed_and_rooted() {
        let signer = ManifestSigner::generate();
        let entries: Vec<_> = (1..=3).map(entry).collect();
        let bytes = encode(header(), &entries, &signer);
        let m = Manifest::parse(&bytes).unwrap();
        assert_eq!(m.entries, entries);
        assert_eq!(m.header.files, 3);
        assert_eq!(m.header.events, 3);
        assert!(m.root_matches());
        let ring = KeyRing::new([signer.public_key()]);
        assert_eq!(m.check_signature(&ring), SignatureCheck::Valid);
        assert_eq!(
            m.check_signature(&KeyRing::new([ManifestSigner::generate().public_key()])),
            SignatureCheck::UnknownKey
        );

        // A changed header no longer verifies; a changed entry no longer fits the root.
        let text = String::from_utf8(bytes).unwrap();
        let edited = text.replacen("\"last_seq\":3", "\"last_seq\":4", 1);
        let m = Manifest::parse(edited.as_bytes()).unwrap();
        assert_eq!(m.check_signature(&ring), SignatureCheck::Bad);
        let edited = text.replacen("\"bytes\":12", "\"bytes\":13", 1);
        let m = Manifest::parse(edited.as_bytes()).unwrap();
        assert_eq!(m.check_signature(&ring), SignatureCheck::Valid);
        assert!(!m.root_matches());
    }

    #[test]
    fn an_entry_gives_its_time_bounds_only_when_both_are_recorded() {
        let mut e = entry(1);
        e.earliest = Some(rfc3339_ms(1_000));
        e.latest = Some(rfc3339_ms(2_500));
        assert_eq!(e.time_bounds_ms(), Some((1_000, 2_500)));
        e.latest = None;
        assert_eq!(e.time_bounds_ms(), None);
    }

    #[test]
    fn malformed_manifests_name_the_line() {
        let signer = ManifestSigner::generate();
        let text = String::from_utf8(encode(header(), &[entry(1)], &signer)).unwrap();
        let cut = &text[..text.len() - 1];
        assert!(Manifest::parse(cut.as_bytes()).is_err());
        let extra = format!("{text}{{}}\n");
        let err = Manifest::parse(extra.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("line 4:"), "{err}");
        let dropped: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        let err = Manifest::parse(dropped.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("counts 1 files, 0 lines follow"), "{err}");
    }

    #[test]
    fn manifest_keys_sort_in_chain_order_and_read_back() {
        let a = manifest_key("acme", 9);
        let b = manifest_key("acme", 10);
        assert!(a < b);
        assert_eq!(number_in_key(&b), Some(10));
        assert_eq!(number_in_key(&format!("prefix/{a}")), Some(9));
        assert_eq!(number_in_key("acme/audit/2026/01/01/00/x.ndjson"), None);
        assert_eq!(
            number_in_key("acme/audit/_manifests/12.manifest.ndjson"),
            None
        );
    }
}
