//! The JSON configuration: the `auditConfig` keys of the reference documents, verbatim, plus
//! auditsync's own. Every key can be overridden by an `AUDITSYNC_...` environment variable.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use auditsync_catalog::SchemaSet;
use auditsync_core::ObjectKey;
use auditsync_engine::cron::Schedule;
use auditsync_engine::ingest::ValidationMode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
}

/// One continuous sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Its name, for logs and the `sync` label of metrics (letters, digits, `-`, `_`).
    pub name: String,
    /// Source: a destination's name or a sink URL.
    pub from: String,
    /// Target: a destination's name or a sink URL.
    pub to: String,
    /// When to run (6-field cron with seconds, or a descriptor such as `@every 5m`).
    pub schedule: String,
    /// Only keys under this prefix.
    #[serde(default)]
    pub prefix: String,
    /// Objects copied at once.
    #[serde(default = "default_sync_concurrency")]
    pub concurrency: usize,
}

fn default_sync_concurrency() -> usize {
    8
}

/// `admin` settings: who may run and download range exports over HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin tokens, each with a name that becomes the actor of what it does. Without any,
    /// `/v1/exports` answers 403. Ingest tokens are not admin tokens.
    #[serde(default)]
    pub tokens: Vec<AdminToken>,
    /// Where export jobs and their files are kept (default: `exports/` beside the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exports_dir: Option<PathBuf>,
    /// Finished export jobs and their files are deleted this many days after they finished
    /// (the events themselves stay in the store and the destinations).
    #[serde(default = "default_keep_exports_days")]
    pub keep_exports_days: u32,
}

fn default_keep_exports_days() -> u32 {
    7
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            exports_dir: None,
            keep_exports_days: default_keep_exports_days(),
        }
    }
}

/// One admin token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who holds it, e.g. `auditor`; recorded as the actor of downloads.
    pub name: String,
    /// `sha256:<hex>` from `auditsync token new`.
    pub hash: String,
}

impl AdminConfig {
    /// (name, digest) of every admin token; errors name the key.
    pub fn token_digests(&self) -> anyhow::Result<Vec<(String, [u8; 32])>> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.name.trim().is_empty() {
                    bail!("config key `admin.tokens[{i}].name`: must not be empty");
                }
                let digest = parse_digest(&t.hash)
                    .ok_or_else(|| anyhow!("config key `admin.tokens[{i}].hash`: expected `sha256:` and 64 hex digits (see `auditsync token new`)"))?;
                Ok((t.name.clone(), digest))
            })
            .collect()
    }

    /// How long finished export jobs are kept.
    pub fn keep_exports(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.keep_exports_days) * 86_400)
    }

    /// The directory of export jobs.
    pub fn exports_dir(&self, store: &StoreConfig) -> PathBuf {
        self.exports_dir.clone().unwrap_or_else(|| {
            store
                .path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("exports")
        })
    }
}

fn parse_digest(hash: &str) -> Option<[u8; 32]> {
    hash.strip_prefix("sha256:")
        .and_then(|hex| hex::decode(hex).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
}

/// `redact` settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Field names redacted besides the built-in ones (`newPassword`, `token`, ...),
    /// compared ignoring case, `_` and `-`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Fields replaced by a keyed HMAC-SHA256 instead of removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacConfig>,
}

/// `redact.hmac` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// Names or paths (`actor.user_email`, `params.email`, `email`).
    pub fields: Vec<String>,
    /// A file holding the key (at least 16 bytes; a trailing newline is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
}

impl HmacConfig {
    /// Reads the key from the file or the variable; errors name the config key.
    pub fn key(&self) -> anyhow::Result<Vec<u8>> {
        let mut key = match (&self.key_file, &self.key_env) {
            (Some(path), None) => std::fs::read(path).with_context(|| {
                format!(
                    "config key `redact.hmac.key_file`: cannot read {}",
                    path.display()
                )
            })?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| {
                    anyhow!("config key `redact.hmac.key_env`: environment variable {var} is not set (or not UTF-8)")
                })?
                .into_bytes(),
            _ => bail!("config key `redact.hmac`: set exactly one of `key_file` and `key_env`"),
        };
        while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            key.pop();
        }
        Ok(key)
    }
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
fn default_schema() -> String {
    auditsync_catalog::DEFAULT_SCHEMA.into()
}

/// `store` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite`.
    #[serde(rename = "type", default = "default_store_type")]
    pub kind: String,
    /// Database file, relative to the working directory.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
}

fn default_store_type() -> String {
    "sqlite".into()
}
fn default_store_path() -> PathBuf {
    "./data/auditsync.db".into()
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: default_store_type(),
            path: default_store_path(),
        }
    }
}

/// `ingest` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address `auditsync run` serves HTTP ingest on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `sha256:<hex>` hashes of the bearer tokens producers must present. Without any, the
    /// service only listens on a loopback address.
    #[serde(default)]
    pub token_hashes: Vec<String>,
    /// Largest accepted event, in bytes.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most events in one request.
    #[serde(default = "default_max_events_per_request")]
    pub max_events_per_request: usize,
    /// `strict` refuses events that break the schema's rules (unknown action, missing
    /// required parameter, no actor); `permissive` stores them and counts them as flagged.
    #[serde(default)]
    pub validation: ValidationMode,
}

fn default_listen() -> String {
    "127.0.0.1:8780".into()
}
fn default_max_body_bytes() -> usize {
    16 << 20
}
fn default_max_events_per_request() -> usize {
    10_000
}

fn default_max_event_bytes() -> usize {
    auditsync_engine::ingest::DEFAULT_MAX_EVENT_BYTES
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token_hashes: Vec::new(),
            max_event_bytes: default_max_event_bytes(),
            max_body_bytes: default_max_body_bytes(),
            max_events_per_request: default_max_events_per_request(),
            validation: ValidationMode::default(),
        }
    }
}

impl IngestConfig {
    /// The listen address, parsed.
    pub fn listen_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        self.listen.parse().map_err(|_| {
            anyhow!(
                "config key `ingest.listen`: {:?} is not an address:port such as 127.0.0.1:8780",
                self.listen
            )
        })
    }

    /// The token hashes as 32-byte digests.
    pub fn token_digests(&self) -> anyhow::Result<Vec<[u8; 32]>> {
        self.token_hashes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                parse_digest(h)
                    .ok_or_else(|| {
                        anyhow!("config key `ingest.token_hashes[{i}]`: expected `sha256:` and 64 hex digits (see `auditsync token new`)")
                    })
            })
            .collect()
    }
}

/// `retry` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff cap, in milliseconds; doubles per attempt.
    #[serde(default = "default_initial_delay")]
    pub initial_delay_ms: u64,
    /// Largest backoff, in milliseconds.
    #[serde(default = "default_max_delay")]
    pub max_delay_ms: u64,
}

fn default_attempts() -> u32 {
    5
}
fn default_initial_delay() -> u64 {
    200
}
fn default_max_delay() -> u64 {
    10_000
}

impl RetryConfig {
    /// The policy the retry layer applies.
    pub fn policy(&self) -> auditsync_engine::retry::RetryPolicy {
        auditsync_engine::retry::RetryPolicy {
            max_attempts: self.max_attempts,
            initial_delay: std::time::Duration::from_millis(self.initial_delay_ms),
            max_delay: std::time::Duration::from_millis(self.max_delay_ms),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            initial_delay_ms: default_initial_delay(),
            max_delay_ms: default_max_delay(),
        }
    }
}

/// One entry of `destinations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationConfig {
    /// Unique name; keys the destination's cursor in the store, so keep it stable.
    pub name: String,
    /// Sink type, e.g. `pv`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Key prefix before `<namespace>/audit/`.
    #[serde(default)]
    pub prefix: String,
    /// `ndjson` or `csv`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Options of the formatter (e.g. `{"delimiter": ";"}` for csv).
    #[serde(default)]
    pub format_options: Map<String, Value>,
    /// `none`, `gzip` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Compression level (gzip 0-9, default 6; zstd 1-22, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i64>,
    /// Schema of the exported records.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Events per file at most.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Uncompressed bytes per file at most (a file stops after the event that crosses it).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// The sink's own options (e.g. `root` for `pv`), checked by the sink.
    #[serde(flatten)]
    pub options: Map<String, Value>,
}

fn default_format() -> String {
    "ndjson".into()
}
fn default_compression() -> String {
    "none".into()
}
fn default_max_events() -> u64 {
    auditsync_engine::export::DEFAULT_MAX_EVENTS
}
fn default_max_bytes() -> u64 {
    auditsync_engine::export::DEFAULT_MAX_BYTES
}

/// Environment variables that are not config overrides.
const RESERVED_ENV: &[&str] = &["AUDITSYNC_CONFIG", "AUDITSYNC_LOG"];

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

    /// Checks what serde cannot: schedules, names, registries, limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        Schedule::parse(&self.uevents_schedule).context("config key `ueventsSchedule`")?;
        Schedule::parse(&self.uevents_gc_schedule).context("config key `ueventsGCSchedule`")?;
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
        if self.store.kind != "sqlite" {
            return Err(auditsync_core::ConfigError::UnknownName {
                key: "store.type".into(),
                kind: "store",
                name: self.store.kind.clone(),
                known: vec!["sqlite".into()],
            }
            .into());
        }
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
            Schedule::parse(&s.schedule).with_context(|| format!("config key `{at}.schedule`"))?;
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
        let mut names = HashSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let at = format!("destinations[{i}]");
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

/// `AUDITSYNC_STORE__PATH=/x` sets `store.path`; segments are matched to keys ignoring case
/// and `_`, so `AUDITSYNC_UEVENTS_GC_SCHEDULE` is `ueventsGCSchedule`. In `destinations`, a
/// segment picks the destination by name (or index): `AUDITSYNC_DESTINATIONS__LOCAL__ROOT`.
fn apply_override(root: &mut Value, name: &str, text: &str) -> anyhow::Result<()> {
    let rest = &name["AUDITSYNC_".len()..];
    let segments: Vec<&str> = rest.split("__").collect();
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect::<String>()
    };
    let unknown = || anyhow!("environment variable {name}: no such config key");
    let mut node = root;
    // Inside a destination, sink options are free-form: a missing one may be added.
    let mut free_form = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match node {
            Value::Object(map) => {
                let key = match map.keys().find(|k| norm(k) == norm(segment)) {
                    Some(k) => k.clone(),
                    None if free_form && last => segment.to_ascii_lowercase(),
                    None => return Err(unknown()),
                };
                if last {
                    let current = map.get(&key).cloned().unwrap_or(Value::Null);
                    let value = typed(&current, text)
                        .with_context(|| format!("environment variable {name}"))?;
                    map.insert(key, value);
                    return Ok(());
                }
                node = map.get_mut(&key).ok_or_else(unknown)?;
                free_form = false;
            }
            Value::Array(items) => {
                let by_name = |d: &Value| d.get("name").and_then(Value::as_str).map(norm);
                let pos = items
                    .iter()
                    .position(|d| by_name(d) == Some(norm(segment)))
                    .or_else(|| segment.parse::<usize>().ok().filter(|i| *i < items.len()))
                    .ok_or_else(|| {
                        anyhow!("environment variable {name}: no destination named or numbered `{segment}`")
                    })?;
                if last {
                    bail!("environment variable {name}: names a whole destination, not a key");
                }
                node = &mut items[pos];
                free_form = true;
            }
            _ => return Err(unknown()),
        }
    }
    Err(unknown())
}

/// Converts the variable's text to the type the key already has.
fn typed(current: &Value, text: &str) -> anyhow::Result<Value> {
    Ok(match current {
        Value::Bool(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => bail!("expected true or false, got {text:?}"),
        },
        Value::Number(_) => {
            let n: serde_json::Number = text
                .parse()
                .map_err(|_| anyhow!("expected a number, got {text:?}"))?;
            Value::Number(n)
        }
        Value::String(_) => Value::String(text.to_string()),
        Value::Array(_) | Value::Object(_) => {
            serde_json::from_str(text).context("expected JSON")?
        }
        Value::Null => match serde_json::from_str::<Value>(text) {
            Ok(v @ (Value::Bool(_) | Value::Array(_) | Value::Object(_))) => v,
            _ => Value::String(text.to_string()),
        },
    })
}

/// Key fragments whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "sas",
    "token",
    "private_key",
    "api_key",
    "apikey",
    "authorization",
    "credential",
];
/// Keys that look secret but hold none (hashes, file paths).
const NOT_SECRET: &[&str] = &["token_hashes", "credentials_file"];

fn mask_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                let secret = SECRET_KEYS.iter().any(|s| lower.contains(s))
                    && !NOT_SECRET.contains(&lower.as_str());
                if secret && !v.is_null() {
                    *v = Value::String("***".into());
                } else {
                    mask_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() {
        crate::plugins::link();
    }

    fn load(json: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        link();
        Config::from_json(
            json,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn err(json: &str, env: &[(&str, &str)]) -> String {
        format!("{:#}", load(json, env).unwrap_err())
    }

    const DEST: &str = r#"{"name": "local", "type": "pv", "root": "/tmp/x"}"#;

    #[test]
    fn defaults_are_the_seed_defaults() {
        let config = load("{}", &[]).unwrap();
        assert!(!config.enable_user_events);
        assert_eq!(config.uevents_schedule, "0 0 */1 * * *");
        assert_eq!(config.uevents_gc_schedule, "0 0 1 * * *");
        assert!(!config.disable_uevents_gc);
        assert_eq!(config.schema, "uevents");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"ueventsSchedule": "0 */5 * * *"}"#, "`ueventsSchedule`"),
            (
                r#"{"ueventsGCSchedule": "@sometimes"}"#,
                "`ueventsGCSchedule`",
            ),
            (r#"{"enableUserEvents": "yes"}"#, "`enableUserEvents`"),
            (
                r#"{"enableUserEvent": true}"#,
                "unknown field `enableUserEvent`",
            ),
            (r#"{"namespace": "a/b"}"#, "`namespace`"),
            (
                r#"{"store": {"type": "mysql"}}"#,
                "`store.type`: unknown store `mysql`; known: sqlite",
            ),
            (r#"{"store": {"path": 5}}"#, "`store.path`"),
            (r#"{"schema": "nope"}"#, "unknown schema `nope`"),
            (
                r#"{"destinations": [{"type": "pv", "root": "/x"}]}"#,
                "`destinations[0]`: missing field `name`",
            ),
            (
                r#"{"destinations": [{"name": "a b", "type": "pv"}]}"#,
                "`destinations[0].name`",
            ),
            (
                r#"{"destinations": [{"name": "a", "type": "pv", "max_events": -1}]}"#,
                "`destinations[0].max_events`",
            ),
            (
                r#"{"destinations": [{"name": "a", "type": "pv", "max_events": 0}]}"#,
                "`destinations[0].max_events`",
            ),
            (
                r#"{"destinations": [{"name": "a", "type": "pv", "prefix": "../up"}]}"#,
                "`destinations[0].prefix`",
            ),
        ];
        for (json, expected) in cases {
            let message = err(json, &[]);
            assert!(message.contains(expected), "{json}: {message}");
        }
        let twice = format!(r#"{{"destinations": [{DEST}, {DEST}]}}"#);
        assert!(err(&twice, &[]).contains("`destinations[1].name`: `local` is used"));
    }

    #[test]
    fn environment_overrides_every_kind_of_key() {
        let json = format!(r#"{{"destinations": [{DEST}]}}"#);
        let config = load(
            &json,
            &[
                ("AUDITSYNC_ENABLE_USER_EVENTS", "true"),
                ("AUDITSYNC_UEVENTS_GC_SCHEDULE", "@daily"),
                ("AUDITSYNC_NAMESPACE", "123"),
                ("AUDITSYNC_STORE__PATH", "/var/lib/a.db"),
                ("AUDITSYNC_DESTINATIONS__LOCAL__ROOT", "/mnt/audit"),
                ("AUDITSYNC_DESTINATIONS__0__MAX_EVENTS", "7"),
                ("AUDITSYNC_DESTINATIONS__LOCAL__STALE_TEMP_SECS", "9"),
                ("AUDITSYNC_CONFIG", "ignored.json"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert!(config.enable_user_events);
        assert_eq!(config.uevents_gc_schedule, "@daily");
        assert_eq!(config.namespace, "123");
        assert_eq!(config.store.path, PathBuf::from("/var/lib/a.db"));
        let d = &config.destinations[0];
        assert_eq!(d.options["root"], Value::from("/mnt/audit"));
        assert_eq!(d.max_events, 7);
        assert_eq!(d.options["stale_temp_secs"], Value::from("9"));
    }

    #[test]
    fn bad_overrides_name_the_variable() {
        let json = format!(r#"{{"destinations": [{DEST}]}}"#);
        let cases = [
            (
                "AUDITSYNC_ENABLE_USER_EVENT",
                "true",
                "AUDITSYNC_ENABLE_USER_EVENT: no such config key",
            ),
            (
                "AUDITSYNC_DISABLE_UEVENTS_GC",
                "maybe",
                "AUDITSYNC_DISABLE_UEVENTS_GC",
            ),
            (
                "AUDITSYNC_DESTINATIONS__NOPE__ROOT",
                "/x",
                "no destination named or numbered `NOPE`",
            ),
            ("AUDITSYNC_UEVENTS_SCHEDULE", "bad", "`ueventsSchedule`"),
        ];
        for (name, value, expected) in cases {
            let message = err(&json, &[(name, value)]);
            assert!(message.contains(expected), "{name}: {message}");
        }
    }

    #[test]
    fn secrets_are_masked() {
        let json = r#"{"destinations": [{"name": "s", "type": "pv", "root": "/x",
            "secret_access_key": "AKIAVERYSECRET", "sas_token": "sig=abc", "credentials_file": "/k.json"}]}"#;
        let value: Value = serde_json::from_str(json).unwrap();
        let config: Config = serde_json::from_value(value).unwrap();
        let shown = config.masked().to_string();
        assert!(
            !shown.contains("AKIAVERYSECRET") && !shown.contains("sig=abc"),
            "{shown}"
        );
        assert!(shown.contains("/k.json"), "{shown}");
    }
}
