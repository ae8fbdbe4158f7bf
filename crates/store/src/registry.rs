//! The registry of stores, by `store.type`, like the sink registry of `auditsync-core`.
//!
//! A store crate registers a [`StoreFactory`] with `auditsync_core::inventory::submit!`;
//! linking the crate (calling its `link()`) is all it takes for the runner to find it.

use std::sync::Arc;

use auditsync_core::registry::Options;
use auditsync_core::ConfigError;

use crate::Store;

/// Builds a store from its JSON options (the `store` object minus `type`).
pub struct StoreFactory {
    /// The `store.type` that selects this store, e.g. `sqlite`.
    pub name: &'static str,
    /// One line for `auditsync sinks`.
    pub summary: &'static str,
    /// Opens the store; errors name the option at fault, relative to `store`.
    pub build: fn(&Options) -> Result<Arc<dyn Store>, ConfigError>,
}

auditsync_core::inventory::collect!(StoreFactory);

/// Names of every linked store, sorted.
pub fn store_names() -> Vec<&'static str> {
    let mut names: Vec<_> = auditsync_core::inventory::iter::<StoreFactory>()
        .map(|f| f.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The factory of store type `name`; an unknown type is an error (at `store.type`) listing
/// the known ones.
pub fn store_factory(name: &str) -> Result<&'static StoreFactory, ConfigError> {
    auditsync_core::inventory::iter::<StoreFactory>()
        .find(|f| f.name == name)
        .ok_or_else(|| ConfigError::UnknownName {
            key: "store.type".into(),
            kind: "store",
            name: name.to_string(),
            known: store_names().into_iter().map(str::to_string).collect(),
        })
}

/// Opens the store of type `name` ([`store_factory`]); an option error is named under
/// `store`.
pub fn build_store(name: &str, options: &Options) -> Result<Arc<dyn Store>, ConfigError> {
    (store_factory(name)?.build)(options).map_err(|e| e.under("store"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_type_names_the_key_and_lists_the_known_ones() {
        let err = super::build_store("nope", &Default::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`store.type`"), "{text}");
        assert!(text.contains("unknown store `nope`"), "{text}");
    }
}
