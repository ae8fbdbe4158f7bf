//! The core of auditsync: the types every plugin shares.
//!
//! This crate is deliberately small and carries no cloud SDK and no async runtime, so that
//! sinks, formatters and schemas written by third parties depend on it alone:
//!
//! - [`Event`]: one audit event in its canonical form.
//! - [`Schema`]: how events become records with a fixed column order, and back.
//! - [`Catalog`]: the actions a schema knows and the parameters each requires.
//! - [`Formatter`]: streams records into a file format (NDJSON, CSV, ...).
//! - [`Sink`]: an object store that takes whole objects atomically and idempotently.
//! - [`ObjectKey`]: a validated relative key that cannot escape a sink's root.
//! - [`sink_url`]: what a sink's URL scheme parser receives and returns.
//! - [`registry`]: factories registered with `inventory`, looked up by name from config.

pub mod canonical_json;
mod catalog;
mod error;
mod event;
pub mod event_json;
mod format;
mod key;
pub mod packed_event;
pub mod registry;
mod schema;
mod sink;
pub mod sink_url;
pub mod strict_json;

pub use catalog::{Catalog, CatalogEntry, CatalogError};
pub use error::{
    field_in_serde_message, ConfigError, ErrorKind, SinkError, SinkOp, ValidationError,
};
pub use event::{Actor, Entity, Event, Outcome, OWN_ACTIONS};
pub use format::{Formatter, ReadError, RecordWriter, Records};
pub use key::{KeyError, ObjectKey};
pub use schema::{Column, ColumnType, Schema, TextEvent};
pub use sink::{verify_sink, ObjectMeta, PutOptions, PutOutcome, Sink, VERIFY_PREFIX};
pub use sink_url::{SinkUrlError, SinkUrlParts, SinkUrlTarget, UrlScheme};

// Re-exported so that plugin crates register factories without naming `inventory` themselves.
#[doc(hidden)]
pub use inventory;

#[cfg(feature = "testkit")]
pub mod testkit;
