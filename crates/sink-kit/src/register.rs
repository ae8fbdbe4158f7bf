//! [`register_sink!`](crate::register_sink): a sink's registration in one place.

/// Registers a sink: its `type` name, a summary for `auditsync sinks`, its typed config
/// (parsed with `deny_unknown_fields` errors named by key), the constructor, and the URL
/// schemes that name it. It also defines the crate's `pub fn link()`, which a binary calls
/// to keep the crate linked.
///
/// ```ignore
/// auditsync_sink_kit::register_sink! {
///     name: "s3",
///     summary: "AWS S3 or an S3-compatible store",
///     config: S3Config,
///     open: S3Sink::new,            // fn(S3Config) -> Result<S3Sink, ConfigError>
///     url_schemes: &[UrlScheme { scheme: "s3", query: &["region"], parse: parse_url }],
/// }
/// ```
#[macro_export]
macro_rules! register_sink {
    (
        name: $name:literal,
        summary: $summary:literal,
        config: $config:ty,
        open: $open:expr,
        url_schemes: $schemes:expr $(,)?
    ) => {
        /// Keeps this crate linked into a binary that finds it only through the registry.
        pub fn link() {}

        fn __auditsync_build_sink(
            options: &$crate::__core::registry::Options,
        ) -> ::std::result::Result<
            ::std::sync::Arc<dyn $crate::__core::Sink>,
            $crate::__core::ConfigError,
        > {
            let config: $config = $crate::__core::registry::parse_options(options)?;
            let sink = ($open)(config)?;
            Ok(::std::sync::Arc::new(sink))
        }

        $crate::__core::inventory::submit! {
            $crate::__core::registry::SinkFactory {
                name: $name,
                summary: $summary,
                build: __auditsync_build_sink,
                url_schemes: $schemes,
            }
        }
    };
}
