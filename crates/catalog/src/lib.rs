//! Built-in schemas.
//!
//! - [`UeventsSchema`] (`uevents`, the default): the NDJSON line of the self-hosted user-events
//!   export (`opType`, `createdAt`, `nameHints`, `userEmail`, `customerName`, `responseCode`,
//!   `requestParams`, `requestPayload`, `latencyInMillis`).
//! - [`CanonicalSchema`] (`event`): auditsync's own [`auditsync_core::Event`] fields.

mod canonical;
mod fields;
mod uevents;

pub use canonical::CanonicalSchema;
pub use uevents::UeventsSchema;

use std::sync::Arc;

use auditsync_core::registry::SchemaFactory;

/// Keeps this crate linked into binaries that only register it through `inventory`.
pub fn link() {}

/// The schema a destination or the ingest path uses when none is configured.
pub const DEFAULT_SCHEMA: &str = "uevents";

auditsync_core::inventory::submit! {
    SchemaFactory { name: "uevents", build: || Arc::new(UeventsSchema::new()) }
}

auditsync_core::inventory::submit! {
    SchemaFactory { name: "event", build: || Arc::new(CanonicalSchema::new()) }
}
