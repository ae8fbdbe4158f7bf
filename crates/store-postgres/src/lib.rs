//! The PostgreSQL store (`store.type: "postgres"`): one durable outbox that several
//! `auditsync run` replicas share.
//!
//! - **No skipped events.** Every writer of events locks the one row of `sequencer` for its
//!   transaction, takes its sequence numbers from it and commits before the next writer can
//!   take any: numbers are committed in the order they are handed out, so a reader that sees
//!   seq n+1 also sees seq n, and an export cursor never passes an event still in flight.
//!   The price is that appends commit one transaction at a time, which the engine's group
//!   commit already shapes them for.
//! - **Leases** (`export:<destination>`) are rows with an expiry, taken in one atomic upsert;
//!   batches and manifest heads are checked under a per-destination advisory lock; GC runs
//!   under an advisory lock, one at a time across replicas, in steps that each commit.
//!   Advisory locks belong to the database, so their keys name the schema.
//! - **Migrations** are versioned and run at first use (see [`migrate`]).
//!
//! ```json
//! "store": {"type": "postgres", "url": "postgres://auditsync@db.internal:5432/audit",
//!           "password_env": "AUDITSYNC_PG_PASSWORD"}
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use auditsync_core::registry::{parse_options, Options};
use auditsync_core::ConfigError;
use auditsync_store::{IdRetention, Store, StoreError, StoreFactory};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::OnceCell;

pub mod migrate;
mod outbox;

/// Links the store into a binary (its registration comes with the crate).
pub fn link() {}

/// `store` options of `type: "postgres"`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/database` (libpq URL or key=value form), without a
    /// password: it comes from `password_env` or `password_file`.
    pub url: String,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (a trailing newline is ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `off` (default): plain TCP, for a private network; `verify`: TLS, the server's
    /// certificate and host name verified against `ca_file` or the system's roots.
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of the CA certificates to trust with `tls: verify` (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The schema the tables live in, created if missing (default `auditsync`).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Connections per replica (default 8).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Days the ids of garbage-collected events are remembered (default 7; 0: not at all).
    #[serde(default = "default_dedupe_window_days")]
    pub dedupe_window_days: u32,
    /// At most this many such ids (default 10,000,000).
    #[serde(default = "default_dedupe_max_ids")]
    pub dedupe_max_ids: u64,
}

/// Whether the connection to the server is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Off,
    /// TLS (rustls), with the certificate chain and host name verified.
    Verify,
}

/// The rustls client configuration for `tls: verify`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ConfigError::invalid("ca_file", format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ConfigError::invalid(
                    "ca_file",
                    format!("{}: no certificate in it", path.display()),
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    ConfigError::invalid("ca_file", format!("{}: {e}", path.display()))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ConfigError::invalid(
                    "tls",
                    "no system CA certificates found: give `ca_file`",
                ));
            }
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConfigError::invalid("tls", e.to_string()))
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

fn default_schema() -> String {
    "auditsync".into()
}
fn default_pool_size() -> usize {
    8
}
fn default_dedupe_window_days() -> u32 {
    (IdRetention::default().window_ms / 86_400_000) as u32
}
fn default_dedupe_max_ids() -> u64 {
    IdRetention::default().max_ids
}

fn build(options: &Options) -> Result<Arc<dyn Store>, ConfigError> {
    let config: PostgresConfig = parse_options(options)?;
    Ok(Arc::new(PostgresStore::new(config)?))
}

auditsync_core::inventory::submit! {
    StoreFactory {
        name: "postgres",
        summary: "PostgreSQL (and compatible databases): one outbox shared by several replicas",
        build,
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    migrated: OnceCell<()>,
    schema: String,
    describe: String,
    retention: IdRetention,
    /// Events GC deletes per transaction ([`auditsync_store::GC_STEP_EVENTS`]; tests make
    /// it small).
    gc_step_events: i64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({})", self.describe)
    }
}

/// Whether `name` is a plain lowercase SQL identifier (it is put into statements as is).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl PostgresStore {
    /// A store for `config`. Nothing connects yet: the first operation connects and runs
    /// the migrations.
    pub fn new(config: PostgresConfig) -> Result<Self, ConfigError> {
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| ConfigError::invalid("url", format!("not a PostgreSQL URL: {e}")))?;
        if pg.get_password().is_some() {
            return Err(ConfigError::invalid(
                "url",
                "holds a password: give it with `password_env` or `password_file` instead",
            ));
        }
        match (&config.password_env, &config.password_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "password_env",
                    "set at most one of `password_env` and `password_file`",
                ))
            }
            (Some(var), None) => {
                let password = std::env::var(var).map_err(|_| {
                    ConfigError::invalid(
                        "password_env",
                        format!("environment variable {var} is not set (or not UTF-8)"),
                    )
                })?;
                pg.password(password);
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::invalid("password_file", format!("{}: {e}", path.display()))
                })?;
                pg.password(text.trim_end_matches(['\n', '\r']));
            }
            (None, None) => {}
        }
        if !is_identifier(&config.schema) {
            return Err(ConfigError::invalid(
                "schema",
                format!(
                    "`{}` is not a lowercase identifier ([a-z_][a-z0-9_]*)",
                    config.schema
                ),
            ));
        }
        if config.pool_size == 0 {
            return Err(ConfigError::invalid("pool_size", "must be at least 1"));
        }
        if config.dedupe_window_days > 3650 {
            return Err(ConfigError::invalid(
                "dedupe_window_days",
                "at most 3650 (ten years)",
            ));
        }
        pg.options(format!("-c search_path={}", config.schema));
        pg.application_name("auditsync");
        let describe = format!(
            "postgres:{}@{}/{} (schema {}{})",
            pg.get_user().unwrap_or("?"),
            pg.get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            pg.get_dbname().unwrap_or("?"),
            config.schema,
            if config.tls == TlsMode::Verify {
                ", TLS"
            } else {
                ""
            }
        );
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match config.tls {
            TlsMode::Off => Manager::from_config(pg, tokio_postgres::NoTls, recycling),
            TlsMode::Verify => {
                let tls = tls_config(config.ca_file.as_deref())?;
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(
                    pg,
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                    recycling,
                )
            }
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .build()
            .map_err(|e| ConfigError::invalid("url", e.to_string()))?;
        Ok(Self {
            pool,
            migrated: OnceCell::new(),
            schema: config.schema,
            describe,
            retention: IdRetention {
                window_ms: i64::from(config.dedupe_window_days) * 86_400_000,
                max_ids: config.dedupe_max_ids,
            },
            gc_step_events: auditsync_store::GC_STEP_EVENTS as i64,
        })
    }

    /// A pooled connection, the migrations having run.
    async fn client(
        &self,
        operation: &'static str,
    ) -> Result<deadpool_postgres::Object, StoreError> {
        let mut client = self.pool.get().await.map_err(|e| StoreError::Backend {
            operation,
            source: Box::new(e),
            retryable: true,
        })?;
        self.migrated
            .get_or_try_init(|| async {
                migrate::run(&mut client, &self.schema)
                    .await
                    .map_err(backend("migrate"))
            })
            .await?;
        Ok(client)
    }
}

/// Maps a database error; retryable when the database says so (serialization failure,
/// deadlock, lock timeout, shutdown) or the connection broke.
fn backend(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |err| {
        let retryable = match err.code() {
            Some(code) => {
                let c = code.code();
                c.starts_with("40") || c.starts_with("08") || c.starts_with("57P") || c == "55P03"
            }
            None => err.is_closed(),
        };
        StoreError::Backend {
            operation,
            source: Box::new(err),
            retryable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> Options {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        let err = |json| build(&options(json)).unwrap_err().to_string();
        let text = err(serde_json::json!({"url": "postgres://u:secret@h/db"}));
        assert!(
            text.contains("`url`") && text.contains("password_env"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        let text = err(serde_json::json!({"url": "postgres://u@h/db", "schema": "a;drop"}));
        assert!(text.contains("`schema`"), "{text}");
        let text = err(
            serde_json::json!({"url": "postgres://u@h/db", "password_env": "AUDITSYNC_NO_SUCH_VAR"}),
        );
        assert!(text.contains("AUDITSYNC_NO_SUCH_VAR is not set"), "{text}");
        let text = err(serde_json::json!({"url": "postgres://u@h/db", "pasword_env": "X"}));
        assert!(text.contains("pasword_env"), "{text}");
        let store = build(&options(
            serde_json::json!({"url": "postgres://u@db.internal:5432/audit"}),
        ))
        .unwrap();
        assert_eq!(
            store.describe(),
            "postgres:u@db.internal/audit (schema auditsync)"
        );
    }
}
