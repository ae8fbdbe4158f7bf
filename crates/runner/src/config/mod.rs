//! The JSON configuration: the `auditConfig` keys of the reference documents, verbatim, plus
//! auditsync's own. Every key can be overridden by an `AUDITSYNC_...` environment variable.
//!
//! - [`model`]: the typed keys and their defaults;
//! - `env`: `AUDITSYNC_...` overrides;
//! - `validate`: what serde cannot check (schedules, names, registries, limits);
//! - `mask`: secrets masked for `config check` and `auditsync.config.changed`.

mod env;
mod manifests;
mod mask;
pub mod model;
pub mod secret_ref;
pub mod tenants;
mod validate;

pub use manifests::ManifestsConfig;
pub use mask::{is_secret_key, mask_secrets};
pub use model::*;
pub use tenants::{load_tenants, tenant_destination_name, TenantFile};

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use auditsync_catalog::SchemaSet;
use env::{apply_override, RESERVED_ENV};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Record user events at all. While false, ingest refuses and records nothing.
    #[serde(rename = "enableUserEvents", default)]
    pub enable_user_events: bool,
    /// When to export (6-field cron with seconds, or a descriptor).
    #[serde(rename = "ueventsSchedule", default = "default_export_schedule")]
    pub uevents_schedule: String,
    /// When to garbage-collect exported events.
    #[serde(rename = "ueventsGCSchedule", default = "default_gc_schedule")]
    pub uevents_gc_schedule: String,
    /// Keep exported events in the store.
    #[serde(rename = "disableUeventsGC", default)]
    pub disable_uevents_gc: bool,
    /// Output goes under `<prefix>/<namespace>/audit/`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The schema producers send records in.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Custom schema definition files (same format as the built-in ones), relative to the
    /// working directory. Their names can be used wherever a schema is named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_files: Vec<PathBuf>,
    /// The durable outbox.
    #[serde(default)]
    pub store: StoreConfig,
    /// Where exported files go.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// A directory of tenant files (see [`tenants`]): destinations that take one tenant's
    /// events only, besides `destinations`, which take every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants_dir: Option<PathBuf>,
    /// Limits on incoming events.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Retries of failed sink operations.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Sensitive fields replaced before anything is stored.
    #[serde(default)]
    pub redact: RedactConfig,
    /// The admin API (`/v1/exports`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Bucket-to-bucket syncs `auditsync run` runs on their schedules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syncs: Vec<SyncConfig>,
    /// Signed, chained manifests beside every destination's files (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<ManifestsConfig>,
}

fn default_export_schedule() -> String {
    "0 0 */1 * * *".into()
}
fn default_gc_schedule() -> String {
    "0 0 1 * * *".into()
}
fn default_namespace() -> String {
    "auditsync".into()
}

impl Config {
    /// Reads `path`, applies the environment's `AUDITSYNC_...` overrides, and validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_json(&text, env).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses JSON text, applies overrides from `env`, and validates.
    pub fn from_json(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let raw: Value = serde_json::from_str(text).context("not valid JSON")?;
        // First pass fills in defaults so that overrides can target keys the file omits.
        let config: Config = deserialize(raw)?;
        let mut value = serde_json::to_value(&config)?;
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("AUDITSYNC_") && !RESERVED_ENV.contains(&k.as_str()))
            .collect();
        overrides.sort();
        for (name, text) in &overrides {
            apply_override(&mut value, name, text)?;
        }
        let config: Config = deserialize(value)?;
        config.validate()?;
        Ok(config)
    }

    /// The built-in and registered schemas plus those of `schema_files`.
    pub fn schemas(&self) -> anyhow::Result<SchemaSet> {
        Ok(SchemaSet::with_files(&self.schema_files)?)
    }

    /// The config as JSON with secret values masked, for `config check`.
    pub fn masked(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        mask_secrets(&mut value);
        value
    }
}

fn deserialize(value: Value) -> anyhow::Result<Config> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            anyhow!("{inner}")
        } else {
            anyhow!("config key `{path}`: {inner}")
        }
    })
}

#[cfg(test)]
mod tests;
