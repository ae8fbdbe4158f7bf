//! Sink URLs (`s3://bucket/prefix`, `file:///path`, a third party's scheme): the parts a
//! sink's URL parser receives, and the error that names the part at fault.
//!
//! The runner splits a URL (with a real URL parser) into [`SinkUrlParts`], finds the sink
//! that registered the scheme ([`crate::registry::SinkFactory::url_schemes`]), refuses query
//! parameters the scheme does not list, and calls the scheme's parser, which turns the
//! parts into the same options a config destination has, plus a key prefix.

use serde_json::{Map, Value};

/// Why a sink URL cannot be used; the message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink URL `{url}`: {part}: {problem}")]
pub struct SinkUrlError {
    /// The URL, as given.
    pub url: String,
    /// The part at fault (`scheme`, `bucket`, `query parameter region`, ...).
    pub part: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A URL scheme a sink answers to.
#[derive(Debug, Clone, Copy)]
pub struct UrlScheme {
    /// The scheme, without `://` (e.g. `s3`).
    pub scheme: &'static str,
    /// The query parameters it accepts; any other is refused, naming it.
    pub query: &'static [&'static str],
    /// Turns the parts into sink options and a key prefix.
    pub parse: fn(&SinkUrlParts) -> Result<SinkUrlTarget, SinkUrlError>,
}

/// What a URL means: the sink's options (as in a config destination) and a key prefix.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SinkUrlTarget {
    /// The sink's options.
    pub options: Map<String, Value>,
    /// Keys live under this prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
}

/// A sink URL taken apart and percent-decoded. Credentials never reach a parser: a URL
/// with a user name or password is refused before.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SinkUrlParts {
    /// The URL as given (for error messages).
    pub url: String,
    /// Its scheme.
    pub scheme: String,
    /// Its host (a bucket, an account; empty for `scheme:///path`).
    pub host: String,
    /// Its whole path, decoded (`/var/audit` for `file:///var/audit`).
    pub path: String,
    /// The path's non-empty segments, decoded.
    pub segments: Vec<String>,
    /// Its query parameters, decoded, in order (only names the scheme accepts).
    pub query: Vec<(String, String)>,
}

impl SinkUrlParts {
    /// An error about `part` of this URL.
    pub fn fail(&self, part: &str, problem: impl Into<String>) -> SinkUrlError {
        SinkUrlError {
            url: self.url.clone(),
            part: part.to_string(),
            problem: problem.into(),
        }
    }

    /// The segments after the first `skip`, joined by `/`: the key prefix.
    pub fn prefix_after(&self, skip: usize) -> String {
        self.segments
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The host, or an error naming `part` with `example` when it is empty.
    pub fn required_host(&self, part: &str, example: &str) -> Result<String, SinkUrlError> {
        if self.host.is_empty() {
            return Err(self.fail(part, format!("missing: {example}")));
        }
        Ok(self.host.clone())
    }

    /// Copies every query parameter into `options` under its own name; those in
    /// `booleans` must be `true`/`1` or `false`/`0` and become JSON booleans.
    pub fn query_into(
        &self,
        options: &mut Map<String, Value>,
        booleans: &[&str],
    ) -> Result<(), SinkUrlError> {
        for (name, value) in &self.query {
            let value = if booleans.contains(&name.as_str()) {
                match value.as_str() {
                    "true" | "1" => Value::Bool(true),
                    "false" | "0" => Value::Bool(false),
                    other => {
                        return Err(self.fail(
                            &format!("query parameter `{name}`"),
                            format!("`{other}` is not true or false"),
                        ))
                    }
                }
            } else {
                Value::String(value.clone())
            };
            options.insert(name.clone(), value);
        }
        Ok(())
    }

    /// The local path of a `scheme:///path` URL (a host other than `localhost` is refused).
    pub fn local_path(&self) -> Result<String, SinkUrlError> {
        if !self.host.is_empty() && self.host != "localhost" {
            return Err(self.fail(
                "host",
                format!(
                    "`{}`: a {}:// URL names a local path, {}:///path",
                    self.host, self.scheme, self.scheme
                ),
            ));
        }
        if !self.path.starts_with('/') || self.path.len() < 2 {
            return Err(self.fail("path", "not an absolute local path"));
        }
        Ok(self.path.clone())
    }
}
