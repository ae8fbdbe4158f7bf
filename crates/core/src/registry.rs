//! Registries of sink, formatter and schema factories.
//!
//! A plugin crate registers a factory with [`inventory::submit!`]; linking the crate is all
//! it takes for the runner to find it by name. Beware that the linker drops crates nothing
//! references, so a binary must reference each plugin crate (e.g. call a `link()` fn).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{ConfigError, Formatter, Schema, Sink};

/// Options of a factory: the JSON object from the config, minus the keys the runner owns.
pub type Options = Map<String, Value>;

/// Builds a sink from its JSON options (the destination object minus the common keys).
pub struct SinkFactory {
    /// The destination `type` that selects this sink, e.g. `pv`.
    pub name: &'static str,
    /// One line for `auditsync sinks`.
    pub summary: &'static str,
    /// Builds the sink; errors name the option at fault, relative to the destination.
    pub build: fn(&Options) -> Result<Arc<dyn Sink>, ConfigError>,
    /// The URL schemes that name this sink in `sync --from/--to`, `export --source` and
    /// `syncs` (may be empty).
    pub url_schemes: &'static [crate::UrlScheme],
}

/// Builds a formatter from its JSON options.
pub struct FormatterFactory {
    /// The `format` name, e.g. `csv`.
    pub name: &'static str,
    /// Builds the formatter.
    pub build: fn(&Options) -> Result<Arc<dyn Formatter>, ConfigError>,
}

/// Builds a built-in schema.
pub struct SchemaFactory {
    /// The `schema` name, e.g. `uevents`.
    pub name: &'static str,
    /// Gives the schema; a built-in one may be built once and shared by every caller.
    pub build: fn() -> Arc<dyn Schema>,
}

inventory::collect!(SinkFactory);
inventory::collect!(FormatterFactory);
inventory::collect!(SchemaFactory);

fn sorted(names: impl Iterator<Item = &'static str>) -> Vec<&'static str> {
    let mut names: Vec<_> = names.collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn unknown(key: &str, kind: &'static str, name: &str, known: Vec<&'static str>) -> ConfigError {
    ConfigError::UnknownName {
        key: key.to_string(),
        kind,
        name: name.to_string(),
        known: known.into_iter().map(str::to_string).collect(),
    }
}

/// Names of every linked sink, sorted.
pub fn sink_names() -> Vec<&'static str> {
    sorted(inventory::iter::<SinkFactory>().map(|f| f.name))
}

/// The factory of the sink called `name`, if linked.
pub fn sink_factory(name: &str) -> Option<&'static SinkFactory> {
    inventory::iter::<SinkFactory>().find(|f| f.name == name)
}

/// Every linked URL scheme with the sink it names, sorted by scheme.
pub fn url_schemes() -> Vec<(&'static crate::UrlScheme, &'static SinkFactory)> {
    let mut all: Vec<_> = inventory::iter::<SinkFactory>()
        .flat_map(|f| f.url_schemes.iter().map(move |s| (s, f)))
        .collect();
    all.sort_by_key(|(s, _)| s.scheme);
    all
}

/// Builds the sink called `name`; an unknown name is an error listing the known ones.
pub fn build_sink(name: &str, options: &Map<String, Value>) -> Result<Arc<dyn Sink>, ConfigError> {
    let factory = sink_factory(name).ok_or_else(|| unknown("type", "sink", name, sink_names()))?;
    (factory.build)(options)
}

/// Names of every linked formatter, sorted.
pub fn formatter_names() -> Vec<&'static str> {
    sorted(inventory::iter::<FormatterFactory>().map(|f| f.name))
}

/// Builds the formatter called `name`; an unknown name is an error listing the known ones.
pub fn build_formatter(
    name: &str,
    options: &Map<String, Value>,
) -> Result<Arc<dyn Formatter>, ConfigError> {
    let factory = inventory::iter::<FormatterFactory>()
        .find(|f| f.name == name)
        .ok_or_else(|| unknown("format", "formatter", name, formatter_names()))?;
    (factory.build)(options)
}

/// The linked formatter whose files end in `.<extension>` (`name` without any compression
/// suffix, e.g. `00-09.csv`), built with default options.
pub fn formatter_for_file(name: &str) -> Option<Arc<dyn Formatter>> {
    inventory::iter::<FormatterFactory>()
        .filter_map(|f| (f.build)(&Map::new()).ok())
        .find(|f| name.ends_with(&format!(".{}", f.extension())))
}

/// Names of every linked schema, sorted.
pub fn schema_names() -> Vec<&'static str> {
    sorted(inventory::iter::<SchemaFactory>().map(|f| f.name))
}

/// Builds the schema called `name`; an unknown name is an error listing the known ones.
pub fn build_schema(name: &str) -> Result<Arc<dyn Schema>, ConfigError> {
    let factory = inventory::iter::<SchemaFactory>()
        .find(|f| f.name == name)
        .ok_or_else(|| unknown("schema", "schema", name, schema_names()))?;
    Ok((factory.build)())
}

/// Parses a factory's options into its typed config, naming the offending key on error.
///
/// Typed configs should use `#[serde(deny_unknown_fields)]` so that a misspelt key is an
/// error rather than a silently ignored setting.
pub fn parse_options<T: serde::de::DeserializeOwned>(
    options: &Map<String, Value>,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(Value::Object(options.clone())).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let key = if path == "." {
            crate::field_in_serde_message(&message)
                .unwrap_or_default()
                .to_string()
        } else {
            path
        };
        ConfigError::invalid(key, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Opts {
        root: String,
    }

    #[test]
    fn unknown_sink_lists_known_names() {
        let err = build_sink("nope", &Map::new()).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownName { kind: "sink", .. }));
        assert!(err.to_string().contains("unknown sink `nope`"), "{err}");
    }

    #[test]
    fn parse_options_names_the_field() {
        let mut options = Map::new();
        options.insert("rot".into(), Value::from("/x"));
        let err = parse_options::<Opts>(&options)
            .unwrap_err()
            .under("destinations[0]");
        assert!(
            err.to_string()
                .starts_with("config key `destinations[0].rot`: unknown field"),
            "{err}"
        );
    }
}
