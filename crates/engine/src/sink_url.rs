//! Sink URLs for ad-hoc use: `s3://bucket/prefix?region=..&endpoint=..`,
//! `az://account/container/prefix`, `gs://bucket/prefix`, `file:///path`, and any scheme a
//! linked third-party sink registers.
//!
//! This module only takes a URL apart ([`auditsync_core::SinkUrlParts`]); the sink that
//! registered the scheme ([`auditsync_core::registry::SinkFactory::url_schemes`]) turns the
//! parts into its own options (checked by its typed config) plus a key prefix. Credentials
//! never go in the URL: each sink reads them from its cloud's usual places.

use auditsync_core::registry;
use auditsync_core::SinkUrlParts;
use serde_json::{Map, Value};

pub use auditsync_core::SinkUrlError;

/// A parsed sink URL.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkUrl {
    /// The sink type, as registered (`s3`, `azure`, `gcs`, `pv`, ...).
    pub kind: &'static str,
    /// The sink's options.
    pub options: Map<String, Value>,
    /// Keys live under this prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
}

/// True when `text` looks like a URL rather than a destination name.
pub fn is_url(text: &str) -> bool {
    text.contains("://")
}

/// Parses a sink URL with the parser of the sink that registered its scheme.
pub fn parse(text: &str) -> Result<SinkUrl, SinkUrlError> {
    let fail = |part: &str, problem: String| SinkUrlError {
        url: text.to_string(),
        part: part.to_string(),
        problem,
    };
    let url = url::Url::parse(text).map_err(|e| fail("url", e.to_string()))?;
    let scheme = url.scheme();
    let schemes = registry::url_schemes();
    let (handler, factory) = schemes
        .iter()
        .find(|(s, _)| s.scheme == scheme)
        .ok_or_else(|| {
            let known: Vec<String> = schemes
                .iter()
                .map(|(s, _)| format!("{}://", s.scheme))
                .collect();
            fail(
                "scheme",
                format!("`{scheme}` is not known; known: {}", known.join(", ")),
            )
        })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "credentials",
            "do not put credentials in a URL; use the environment or a named destination".into(),
        ));
    }
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| {
            s.filter(|p| !p.is_empty())
                .map(|p| percent_decode(p).map_err(|e| fail("path", e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let mut query = Vec::new();
    for (name, value) in url.query_pairs() {
        if !handler.query.contains(&name.as_ref()) {
            return Err(fail(
                &format!("query parameter `{name}`"),
                if handler.query.is_empty() {
                    format!("{scheme}:// URLs take no query parameters")
                } else {
                    format!(
                        "not known for {scheme}://; known: {}",
                        handler.query.join(", ")
                    )
                },
            ));
        }
        query.push((name.to_string(), value.to_string()));
    }
    let parts = SinkUrlParts {
        url: text.to_string(),
        scheme: scheme.to_string(),
        host: url.host_str().unwrap_or("").to_string(),
        path: percent_decode(url.path()).map_err(|e| fail("path", e))?,
        segments,
        query,
    };
    let target = (handler.parse)(&parts)?;
    Ok(SinkUrl {
        kind: factory.name,
        options: target.options,
        prefix: target.prefix.trim_matches('/').to_string(),
    })
}

fn percent_decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("`{text}` is not UTF-8 once decoded"))
}
