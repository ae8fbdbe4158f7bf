//! Built-in schemas and the machinery for custom ones.
//!
//! - `uevents` ([`UeventsSchema`], the default): the NDJSON line of the self-hosted
//!   user-events export, with the operation catalog of the SaaS audit documentation.
//! - `warehouse`: 29 typed columns with the event date split out, and its event types.
//! - `actor_change`: nine columns (who, what, the object before and after), its action
//!   catalog, and the rule that a user or an access token is always named.
//! - `event` ([`CanonicalSchema`]): auditsync's own [`auditsync_core::Event`] fields.
//!
//! Every schema but `event` is a [`SchemaDefinition`] file under `schemas/`, embedded at
//! build time; custom schemas are files in the same format ([`SchemaSet`]).
//! [`ddl`] prints the CREATE TABLE statement that loads a schema's exported files.

mod builtin;
mod canonical;
pub mod ddl;
mod defined;
mod definition;
mod fields;
mod set;
mod time;
mod uevents;

pub use builtin::{ACTOR_CHANGE, UEVENTS, WAREHOUSE};
pub use canonical::CanonicalSchema;
pub use defined::DefinedSchema;
pub use definition::{type_name, ColumnDefinition, Derive, SchemaDefinition};
pub use set::SchemaSet;
pub use uevents::UeventsSchema;

use std::sync::{Arc, LazyLock};

use auditsync_core::registry::SchemaFactory;
use auditsync_core::Schema;

/// Keeps this crate linked into binaries that only register it through `inventory`.
pub fn link() {}

/// The schema a destination or the ingest path uses when none is configured.
pub const DEFAULT_SCHEMA: &str = "uevents";

// The built-in schemas are built once per process and shared: a thousand tenant
// destinations of one schema would otherwise parse its definition and build its catalog a
// thousand times at every start.
static UEVENTS_SCHEMA: LazyLock<Arc<dyn Schema>> = LazyLock::new(|| Arc::new(UeventsSchema::new()));
static WAREHOUSE_SCHEMA: LazyLock<Arc<dyn Schema>> =
    LazyLock::new(|| Arc::new(builtin::defined(WAREHOUSE)));
static ACTOR_CHANGE_SCHEMA: LazyLock<Arc<dyn Schema>> =
    LazyLock::new(|| Arc::new(builtin::defined(ACTOR_CHANGE)));

auditsync_core::inventory::submit! {
    SchemaFactory { name: "uevents", build: || Arc::clone(&UEVENTS_SCHEMA) }
}

auditsync_core::inventory::submit! {
    SchemaFactory { name: "warehouse", build: || Arc::clone(&WAREHOUSE_SCHEMA) }
}

auditsync_core::inventory::submit! {
    SchemaFactory { name: "actor_change", build: || Arc::clone(&ACTOR_CHANGE_SCHEMA) }
}

auditsync_core::inventory::submit! {
    SchemaFactory { name: "event", build: || Arc::new(CanonicalSchema::new()) }
}
