//! Archive manifests: signed, chained lists of the files auditsync exported, so that an
//! archive copied anywhere proves itself complete and unaltered, offline.
//!
//! - [`model`]: the manifest file (a signed header line, a signature line, one line per file).
//! - [`merkle`]: the RFC 9162 Merkle tree over the file lines, for short inclusion proofs.
//! - [`keys`]: Ed25519 signing keys (PKCS#8 PEM) and the public keys a verifier trusts.
//!
//! This crate does no I/O: the engine writes manifests and verifies archives through sinks.
//! docs/provability.md specifies the format for independent verifiers.

pub mod keys;
pub mod merkle;
pub mod model;

pub use keys::{KeyError, KeyRing, ManifestSigner, PublicKey};
pub use model::{
    check_header_signature, encode, manifest_key, number_in_key, FileEntry, Header, Link, Manifest,
    ManifestError, SignatureCheck, SignatureLine,
};
