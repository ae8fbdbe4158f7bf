//! The store, sink and formatter crates this library links (its Cargo features).
//!
//! Plugins register themselves with `inventory`, but the linker drops a crate nothing
//! references; [`link`] references each enabled one so its registrations are kept.

/// Sinks enabled by Cargo features (checked against the registry by a test).
#[cfg_attr(not(test), allow(dead_code))]
pub const SINKS: &[&str] = &[
    #[cfg(feature = "azure")]
    "azure",
    #[cfg(feature = "gcs")]
    "gcs",
    #[cfg(feature = "pv")]
    "pv",
    #[cfg(feature = "s3")]
    "s3",
];

/// Stores enabled by Cargo features (checked against the registry by a test).
#[cfg_attr(not(test), allow(dead_code))]
pub const STORES: &[&str] = &[
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "sqlite")]
    "sqlite",
];

/// Formatters enabled by Cargo features (checked against the registry by a test).
#[cfg_attr(not(test), allow(dead_code))]
pub const FORMATTERS: &[&str] = &[
    #[cfg(feature = "ndjson")]
    "ndjson",
    #[cfg(feature = "csv")]
    "csv",
];

/// References every enabled plugin crate. [`crate::main`] calls it; an application that
/// uses [`crate::App`] without `main` calls it once before building one.
pub fn link() {
    auditsync_catalog::link();
    #[cfg(feature = "sqlite")]
    auditsync_store_sqlite::link();
    #[cfg(feature = "postgres")]
    auditsync_store_postgres::link();
    #[cfg(feature = "pv")]
    auditsync_pv::link();
    #[cfg(feature = "s3")]
    auditsync_s3::link();
    #[cfg(feature = "gcs")]
    auditsync_gcs::link();
    #[cfg(feature = "azure")]
    auditsync_azure::link();
    #[cfg(feature = "ndjson")]
    auditsync_ndjson::link();
    #[cfg(feature = "csv")]
    auditsync_csv::link();
}

#[cfg(test)]
mod tests {
    use auditsync_core::registry;

    #[test]
    fn every_enabled_feature_is_in_the_registry_and_nothing_else() {
        super::link();
        assert_eq!(registry::sink_names(), super::SINKS);
        assert_eq!(auditsync_store::registry::store_names(), super::STORES);
        let mut formatters = super::FORMATTERS.to_vec();
        formatters.sort_unstable();
        assert_eq!(registry::formatter_names(), formatters);
        assert!(registry::schema_names().contains(&"uevents"));
    }
}
