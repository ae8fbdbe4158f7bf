//! The built-in schema definition files, embedded at build time.

use crate::defined::DefinedSchema;
use crate::definition::SchemaDefinition;

/// `schemas/uevents.json`.
pub const UEVENTS: &str = include_str!("../schemas/uevents.json");
/// `schemas/warehouse.json`.
pub const WAREHOUSE: &str = include_str!("../schemas/warehouse.json");
/// `schemas/actor_change.json`.
pub const ACTOR_CHANGE: &str = include_str!("../schemas/actor_change.json");

/// Builds a schema from an embedded definition. The files are checked by this crate's tests,
/// so a failure here is a bug in the build, not in a user's input.
pub(crate) fn defined(text: &str) -> DefinedSchema {
    SchemaDefinition::from_json(text)
        .and_then(DefinedSchema::new)
        .expect("built-in schema definitions are valid (tested)")
}
