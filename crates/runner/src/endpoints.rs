//! `--from`, `--to` and `--source` arguments: a configured destination's name, or a sink URL.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use auditsync_core::{registry, Sink};
use auditsync_engine::prefix::PrefixedSink;
use auditsync_engine::retry::{RetryPolicy, RetryingSink};
use auditsync_engine::{sink_url, Destination};

use crate::config::Config;

/// A sink to read or write objects in, rooted where its export tree starts.
pub struct Endpoint {
    /// The sink, with the retry layer and its prefix applied.
    pub sink: Arc<dyn Sink>,
    /// The destination it names, if it is one (for its schema and format).
    pub destination: Option<String>,
    /// What it is, for messages (never with secrets).
    pub label: String,
}

fn retry_policy(config: Option<&Config>) -> RetryPolicy {
    config.map_or_else(RetryPolicy::default, |c| c.retry.policy())
}

/// Opens `spec`: a sink URL (`s3://bucket/prefix`, `file:///dir`, a linked sink's scheme) or the name of a
/// destination in `destinations`.
pub fn open(
    spec: &str,
    config: Option<&Config>,
    destinations: &[Destination],
    what: &str,
) -> anyhow::Result<Endpoint> {
    if sink_url::is_url(spec) {
        let url = sink_url::parse(spec).with_context(|| what.to_string())?;
        let sink = registry::build_sink(url.kind, &url.options)
            .map_err(|e| anyhow!("{what}: {spec}: {e}"))?;
        let sink: Arc<dyn Sink> = Arc::new(RetryingSink::new(sink, retry_policy(config)));
        let sink = PrefixedSink::new(sink, &url.prefix).map_err(|e| anyhow!("{what}: {e}"))?;
        return Ok(Endpoint {
            label: sink.describe(),
            sink: Arc::new(sink),
            destination: None,
        });
    }
    let Some(d) = destinations.iter().find(|d| d.name == spec) else {
        let names: Vec<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
        return Err(anyhow!(
            "{what}: `{spec}` is neither a sink URL ({}) nor a configured destination{}",
            registry::url_schemes()
                .iter()
                .map(|(s, _)| format!("{}://", s.scheme))
                .collect::<Vec<_>>()
                .join(", "),
            if names.is_empty() {
                " (the config has none)".to_string()
            } else {
                format!("; destinations: {}", names.join(", "))
            }
        ));
    };
    // A destination's sink is already rooted at its prefix.
    Ok(Endpoint {
        label: format!("{} ({})", d.name, d.sink.describe()),
        sink: d.sink.clone(),
        destination: Some(d.name.clone()),
    })
}
