//! What serde cannot check: schedules, names, registries, limits.

use std::collections::HashSet;

use anyhow::{bail, Context};
use auditsync_core::ObjectKey;

use auditsync_catalog::SchemaSet;

use super::{Config, DestinationConfig};

impl Config {
    /// Checks what serde cannot: schedules, names, registries, limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        // Every schedule parses, and fires: one that never does is an audit gap found late.
        let now = chrono::Utc::now();
        for s in crate::schedules::configured(self)? {
            if s.schedule.next_after(now).is_none() {
                bail!(
                    "config key `{}`: `{}` never fires: no instant within five years matches it",
                    s.key,
                    s.schedule
                );
            }
        }
        if self.namespace.is_empty() || self.namespace.contains('/') {
            bail!(
                "config key `namespace`: must be one non-empty path segment, got {:?}",
                self.namespace
            );
        }
        ObjectKey::new(self.namespace.as_str()).context("config key `namespace`")?;
        let schemas = self.schemas()?;
        schemas.get(&self.schema)?;
        auditsync_engine::redact::Redactor::check_rules(
            self.redact.fields.iter().map(String::as_str),
        )
        .context("config key `redact.fields`")?;
        if let Some(hmac) = &self.redact.hmac {
            auditsync_engine::redact::Redactor::check_rules(hmac.fields.iter().map(String::as_str))
                .context("config key `redact.hmac.fields`")?;
            if hmac.key_file.is_some() == hmac.key_env.is_some() {
                bail!("config key `redact.hmac`: set exactly one of `key_file` and `key_env`");
            }
        }
        if let Some(manifests) = &self.manifests {
            manifests.validate()?;
        }
        auditsync_store::registry::store_factory(&self.store.kind)?;
        if self.ingest.max_event_bytes < 256 {
            bail!("config key `ingest.max_event_bytes`: must be at least 256");
        }
        if self.ingest.max_body_bytes < self.ingest.max_event_bytes {
            bail!("config key `ingest.max_body_bytes`: must be at least `ingest.max_event_bytes`");
        }
        if self.ingest.max_events_per_request == 0 {
            bail!("config key `ingest.max_events_per_request`: must be at least 1");
        }
        self.ingest.listen_addr()?;
        self.ingest.token_digests()?;
        self.admin.token_digests()?;
        let mut sync_names = HashSet::new();
        for (i, s) in self.syncs.iter().enumerate() {
            let at = format!("syncs[{i}]");
            let valid_name = !s.name.is_empty()
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name || !sync_names.insert(s.name.as_str()) {
                bail!("config key `{at}.name`: {:?} must be unique, non-empty letters, digits, `-` or `_`", s.name);
            }
            for (key, spec) in [("from", &s.from), ("to", &s.to)] {
                if auditsync_engine::sink_url::is_url(spec) {
                    auditsync_engine::sink_url::parse(spec)
                        .with_context(|| format!("config key `{at}.{key}`"))?;
                } else if !self.destinations.iter().any(|d| &d.name == spec) {
                    bail!("config key `{at}.{key}`: `{spec}` is neither a sink URL nor a destination's name");
                }
            }
            if s.concurrency == 0 {
                bail!("config key `{at}.concurrency`: must be at least 1");
            }
        }
        if self.retry.max_attempts == 0 {
            bail!("config key `retry.max_attempts`: must be at least 1");
        }
        check_destinations(&self.destinations, "destinations", &schemas)
    }
}

/// Checks a list of destinations (`at` is the key they are under, e.g. `destinations`):
/// unique, well-formed names, prefixes, schemas and limits.
pub(crate) fn check_destinations(
    destinations: &[DestinationConfig],
    at: &str,
    schemas: &SchemaSet,
) -> anyhow::Result<()> {
    let mut names = HashSet::new();
    for (i, d) in destinations.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let valid_name = !d.name.is_empty()
            && d.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            bail!(
                "config key `{at}.name`: {:?} must be non-empty letters, digits, `-` or `_`",
                d.name
            );
        }
        if !names.insert(d.name.as_str()) {
            bail!(
                "config key `{at}.name`: `{}` is used by an earlier destination",
                d.name
            );
        }
        if !d.prefix.trim_end_matches('/').is_empty() {
            ObjectKey::new(d.prefix.trim_end_matches('/'))
                .with_context(|| format!("config key `{at}.prefix`"))?;
        }
        schemas.get(&d.schema).map_err(|e| e.under(&at))?;
        if d.max_events == 0 {
            bail!("config key `{at}.max_events`: must be at least 1");
        }
        if d.max_bytes < 1024 {
            bail!("config key `{at}.max_bytes`: must be at least 1024");
        }
    }
    Ok(())
}
