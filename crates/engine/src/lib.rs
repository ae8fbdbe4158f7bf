//! The auditsync engine: everything between a producer's record and an object in a sink.
//!
//! - [`ingest`]: parse and validate records against a schema, then append them to the store,
//!   all or nothing.
//! - [`bulk`]: streaming ingest of one input of any size, all or nothing.
//! - [`cron`]: 6-field cron schedules with the semantics of the Go `robfig/cron` library.
//! - [`encode`]: schema → formatter → compression, streamed, with the file's SHA-256.
//! - [`export`]: per-destination batches after its cursor, deterministic keys, put, cursor.
//! - [`gc`]: deletes what every destination has.
//! - [`health`]: each destination's state; a failing one waits, growing pauses, alone.
//! - [`manifests`]: each destination's signed, chained manifests beside its files.
//! - [`recorder`]: group commit, and the `Recorder` integrators embed.
//! - [`redact`]: sensitive parameters replaced before anything is stored.
//! - [`schedule`]: export, GC and sync on their cron schedules, for `run` and embedders alike.
//! - [`retry`]: a [`auditsync_core::Sink`] layer that retries what a retry can fix.
//! - [`range`]: one file of a time range, from the store and an archive, each event once.
//! - [`proof`]: inclusion proofs of single records, made and checked.
//! - [`prefix`]: a [`auditsync_core::Sink`] layer that roots a sink at a key prefix.
//! - [`sink_url`]: `s3://`, `az://`, `gs://` and `file://` URLs as sink options.
//! - [`sync`]: copies what a target sink lacks, verified, never overwriting.
//! - [`verify_archive`]: checks an exported tree against its signed manifests, offline.

pub mod bulk;
pub mod cron;
pub mod encode;
pub mod export;
pub mod gc;
pub mod health;
pub mod ingest;
pub mod manifests;
pub mod prefix;
pub mod proof;
pub mod range;
pub mod recorder;
pub mod redact;
pub mod retry;
pub mod schedule;
pub mod sink_url;
pub mod sync;
pub mod verify_archive;

pub use encode::{Compression, FileFormat};
pub use export::{BatchLimits, Destination, DestinationReport, ExportError, Exporter, Pause};
