//! Builds the store, destinations and ingestor a config describes.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use auditsync_catalog::SchemaSet;
use auditsync_core::registry;
use auditsync_engine::ingest::Ingestor;
use auditsync_engine::prefix::PrefixedSink;
use auditsync_engine::redact::Redactor;
use auditsync_engine::retry::{RetryPolicy, RetryingSink};
use auditsync_engine::{BatchLimits, Compression, Destination, Exporter, FileFormat};
use auditsync_store::Store;

use crate::config::{load_tenants, tenant_destination_name, Config, DestinationConfig, TenantFile};

/// Everything a command needs, built from one config.
pub struct App {
    /// The validated config.
    pub config: Config,
    /// The tenant files of `tenants_dir`, as last read ([`App::reload_tenants`]).
    tenants: RwLock<Arc<Vec<TenantFile>>>,
    /// The outbox.
    pub store: Arc<dyn Store>,
    /// Exports to every destination.
    pub exporter: Arc<Exporter>,
    /// Validates and stores incoming records.
    pub ingestor: Ingestor,
    /// What is removed or pseudonymized before anything is stored.
    pub redactor: Redactor,
    /// Every schema the config can name.
    pub schemas: SchemaSet,
}

impl App {
    /// Opens the store and builds every destination; errors name the config key.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        Self::assemble(config, |config| {
            Ok(auditsync_store::registry::build_store(
                &config.store.kind,
                &config.store.options(),
            )?)
        })
    }

    /// [`App::build`] around a store opened by the caller instead of the one `store` in the
    /// config describes (an application that opens its own; tests of a store in a given
    /// state). Every destination is still built from the config.
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        Self::assemble(config, |_| Ok(store))
    }

    /// Builds the destinations first, so that a config they refuse opens (and creates) no
    /// store.
    fn assemble(
        config: Config,
        open_store: impl FnOnce(&Config) -> anyhow::Result<Arc<dyn Store>>,
    ) -> anyhow::Result<Self> {
        let retry = config.retry.policy();
        let schemas = config.schemas()?;
        let mut destinations = config
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| {
                build_destination(d, None, retry, &schemas)
                    .map_err(|e| e.under(&format!("destinations[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tenants = match &config.tenants_dir {
            Some(dir) => load_tenants(dir, &schemas)?,
            None => Vec::new(),
        };
        destinations.extend(tenant_destinations(&tenants, retry, &schemas)?);
        let store = open_store(&config)?;
        let schema = schemas.get(&config.schema)?;
        let redactor = app_redactor(&config)?;
        let ingestor = Ingestor::new(store.clone(), schema, config.enable_user_events)
            .with_max_event_bytes(config.ingest.max_event_bytes)
            .with_validation(config.ingest.validation)
            .with_redactor(redactor.clone());
        let mut exporter = Exporter::new(store.clone(), config.namespace.clone(), destinations);
        if let Some(manifests) = &config.manifests {
            exporter = exporter.with_manifests(manifests.settings()?);
        }
        let exporter = Arc::new(exporter);
        Ok(Self {
            config,
            tenants: RwLock::new(Arc::new(tenants)),
            store,
            exporter,
            ingestor,
            redactor,
            schemas,
        })
    }
}

impl App {
    /// The tenant files as last read.
    pub fn tenants(&self) -> Arc<Vec<TenantFile>> {
        Arc::clone(&self.tenants.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads `tenants_dir` again and puts the destinations of its files in place of the
    /// tenant destinations the exporter had; the others stay. A run in progress finishes
    /// with the old set. On any error (a bad file, a sink that cannot be built) nothing
    /// changes and the error names the file and key. Returns the tenants and their
    /// destinations now.
    pub fn reload_tenants(&self) -> anyhow::Result<(usize, usize)> {
        let Some(dir) = &self.config.tenants_dir else {
            return Ok((0, 0));
        };
        let tenants = load_tenants(dir, &self.schemas)?;
        let built = tenant_destinations(&tenants, self.config.retry.policy(), &self.schemas)?;
        let counts = (tenants.len(), built.len());
        let mut destinations: Vec<Destination> = self
            .exporter
            .destinations()
            .iter()
            .filter(|d| d.tenant.is_none())
            .cloned()
            .collect();
        destinations.extend(built);
        self.exporter.replace_destinations(destinations);
        *self.tenants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tenants);
        Ok(counts)
    }

    /// Records one of auditsync's own events (a verify run, a range export) by the road
    /// every event takes: admitted (id, redaction) and committed by a [`Recorder`].
    ///
    /// [`Recorder`]: auditsync_engine::recorder::Recorder
    pub async fn record_own(
        &self,
        event: auditsync_core::Event,
    ) -> Result<auditsync_store::Appended, auditsync_engine::ingest::IngestError> {
        auditsync_engine::recorder::Recorder::start_with(self.store.clone(), self.redactor.clone())
            .record(event)
            .await
    }
}

/// The redactor the config asks for: the built-in names plus `redact.fields`, and the
/// HMAC of `redact.hmac.fields` with its key.
pub fn app_redactor(config: &Config) -> anyhow::Result<Redactor> {
    let redactor = Redactor::with_extra(config.redact.fields.iter().map(String::as_str));
    let Some(hmac) = &config.redact.hmac else {
        return Ok(redactor);
    };
    let key = hmac.key()?;
    redactor
        .with_hmac(key, hmac.fields.iter().map(String::as_str))
        .context("config key `redact.hmac`")
}

/// The destinations of the tenant files; errors name the tenant and the key.
fn tenant_destinations(
    tenants: &[TenantFile],
    retry: RetryPolicy,
    schemas: &SchemaSet,
) -> anyhow::Result<Vec<Destination>> {
    let mut destinations = Vec::new();
    for file in tenants {
        for (i, d) in file.destinations.iter().enumerate() {
            let built = build_destination(d, Some(&file.tenant), retry, schemas)
                .map_err(|e| e.under(&format!("destinations[{i}]")))
                .with_context(|| format!("tenant {:?}", file.tenant))?;
            destinations.push(built);
        }
    }
    Ok(destinations)
}

/// A destination from its config; a tenant's takes only that tenant's events and is named
/// `<name>@<tenant>` in the store.
pub(crate) fn build_destination(
    d: &DestinationConfig,
    tenant: Option<&str>,
    retry: RetryPolicy,
    schemas: &SchemaSet,
) -> Result<Destination, auditsync_core::ConfigError> {
    let options = crate::config::secret_ref::resolve(&d.options)?;
    let sink = registry::build_sink(&d.kind, &options)?;
    let formatter =
        registry::build_formatter(&d.format, &d.format_options).map_err(|e| match e {
            e @ auditsync_core::ConfigError::UnknownName { .. } => e,
            e => e.under("format_options"),
        })?;
    let schema = schemas.get(&d.schema)?;
    let compression = Compression::parse(&d.compression, d.compression_level)?;
    Ok(Destination {
        name: tenant.map_or_else(|| d.name.clone(), |t| tenant_destination_name(t, &d.name)),
        tenant: tenant.map(str::to_string),
        pause: d.paused.then_some(auditsync_engine::Pause {
            max_backlog: d.paused_max_backlog,
        }),
        // The prefix is applied here, once: every key the exporter, `verify` and syncs use
        // below is relative to it.
        sink: Arc::new(
            PrefixedSink::new(Arc::new(RetryingSink::new(sink, retry)), &d.prefix)
                .map_err(|e| auditsync_core::ConfigError::invalid("prefix", e.to_string()))?,
        ),
        format: FileFormat {
            schema,
            formatter,
            compression,
        },
        limits: BatchLimits {
            max_events: d.max_events,
            max_bytes: d.max_bytes,
        },
    })
}
