//! The typed configuration keys and their defaults.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use auditsync_engine::ingest::ValidationMode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// Scopes the token to one tenant: it sees and exports only that tenant's events and
    /// destinations, and gets 403 for any other's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// An admin token as the service checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    /// Who holds it.
    pub name: String,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    /// The one tenant it may see, if scoped.
    pub tenant: Option<String>,
}

impl AdminConfig {
    /// Every admin token's name, digest and scope; errors name the key.
    pub fn token_digests(&self) -> anyhow::Result<Vec<AdminKey>> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.name.trim().is_empty() {
                    bail!("config key `admin.tokens[{i}].name`: must not be empty");
                }
                let digest = parse_digest(&t.hash)
                    .ok_or_else(|| anyhow!("config key `admin.tokens[{i}].hash`: expected `sha256:` and 64 hex digits (see `auditsync token new`)"))?;
                if t.tenant.as_deref().is_some_and(str::is_empty) {
                    bail!("config key `admin.tokens[{i}].tenant`: must not be empty (leave it out for a token of every tenant)");
                }
                Ok(AdminKey {
                    name: t.name.clone(),
                    digest,
                    tenant: t.tenant.clone(),
                })
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

/// `store` settings: its `type` (a registered store) and that store's own options, which
/// the store checks itself (an unknown key is refused there, named under `store`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreConfig {
    /// A registered store type: `sqlite` (default).
    #[serde(rename = "type", default = "default_store_type")]
    pub kind: String,
    /// Database file, relative to the working directory (also where export jobs live).
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// The store type's other options.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl StoreConfig {
    /// The options handed to the store's factory: every key but `type`, and `path` for
    /// SQLite (for other stores it only places the export jobs' directory).
    pub fn options(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut options = self.extra.clone();
        if self.kind == "sqlite" {
            options.insert("path".into(), self.path.display().to_string().into());
        }
        options
    }
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
            extra: Default::default(),
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
    /// Export nothing for now; GC keeps the events it lacks, up to `paused_max_backlog`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// While paused, GC keeps at most this many events for it (past them it goes on without
    /// it, and says so; a warning comes at 80 %).
    #[serde(default = "default_paused_max_backlog")]
    pub paused_max_backlog: u64,
    /// The sink's own options (e.g. `root` for `pv`), checked by the sink.
    #[serde(flatten)]
    pub options: Map<String, Value>,
}

fn default_paused_max_backlog() -> u64 {
    10_000_000
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

pub(super) fn default_schema() -> String {
    auditsync_catalog::DEFAULT_SCHEMA.into()
}
