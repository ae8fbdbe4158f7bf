//! The parameters of an on-demand range export, shared by `export --from/--to` and
//! `POST /v1/exports`, and the code that runs one.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use auditsync_core::registry;
use auditsync_engine::range::{export_range, Archive, RangeProgress, RangeQuery, RangeReport};
use auditsync_engine::{Compression, FileFormat};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::endpoints;

/// What to export.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RangeArgs {
    /// Start: RFC 3339 (`2024-03-01T00:00:00Z`) or a date (`2024-03-01`, from its start).
    #[arg(long)]
    pub from: Option<String>,
    /// End: RFC 3339 (exclusive) or a date (`2024-03-31`, through its end).
    #[arg(long)]
    pub to: Option<String>,
    /// Schema of the output (default: the source destination's, else `schema`).
    #[arg(long)]
    #[serde(default)]
    pub schema: Option<String>,
    /// `csv` or `ndjson` (default csv).
    #[arg(long)]
    #[serde(default)]
    pub format: Option<String>,
    /// `none`, `gzip` or `zstd` (default none).
    #[arg(long)]
    #[serde(default)]
    pub compression: Option<String>,
    /// `action=NAME`, `actor=ID` and `organization=NAME` terms, comma-separated; terms of one
    /// kind are alternatives, kinds must all match.
    #[arg(long)]
    #[serde(default)]
    pub filter: Option<String>,
    /// An archive to read exported (and perhaps garbage-collected) events from: a
    /// destination's name or a sink URL.
    #[arg(long)]
    #[serde(default)]
    pub source: Option<String>,
    /// Schema of the archive's files when `source` is a URL (default `uevents`).
    #[arg(long)]
    #[serde(default)]
    pub source_schema: Option<String>,
    /// CSV only: write text cells exactly as stored. By default a cell starting with `=`,
    /// `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so that spreadsheet
    /// software shows it instead of running it as a formula.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_csv: bool,
    /// Only this tenant's events, whatever `filter` says: set by the service from a
    /// tenant-scoped admin token, never taken from a request.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_tenant: Option<String>,
}

impl RangeArgs {
    /// True when any range parameter is set.
    pub fn any(&self) -> bool {
        self != &RangeArgs::default()
    }
}

/// Parses a time bound; a date means its start (`from`) or the start of the next day (`to`).
pub fn parse_bound(text: &str, what: &str, end: bool) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc().timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis());
    }
    bail!("{what}: {text:?} is not an RFC 3339 time (2024-03-01T00:00:00Z) or a date (2024-03-01)")
}

fn parse_filter(text: &str, query: &mut RangeQuery) -> anyhow::Result<()> {
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, value) = term
            .split_once('=')
            .ok_or_else(|| anyhow!("filter: `{term}` is not key=value"))?;
        match key.trim() {
            "action" => query.actions.push(value.trim().to_string()),
            "actor" => query.actors.push(value.trim().to_string()),
            "organization" => query.organizations.push(value.trim().to_string()),
            other => bail!("filter: unknown key `{other}`; known: action, actor, organization"),
        }
    }
    Ok(())
}

/// A checked export plan.
pub struct RangePlan {
    /// Which events.
    pub query: RangeQuery,
    /// How to write them.
    pub format: FileFormat,
    /// Where else to read them from.
    pub archive: Option<Archive>,
    /// The output's file extension (`csv.gz`, ...).
    pub extension: String,
}

impl RangePlan {
    /// Checks `args` against the app's config; errors name the parameter.
    pub fn new(app: &App, args: &RangeArgs) -> anyhow::Result<Self> {
        let from = args
            .from
            .as_deref()
            .ok_or_else(|| anyhow!("from: missing"))?;
        let to = args.to.as_deref().ok_or_else(|| anyhow!("to: missing"))?;
        let mut query = RangeQuery {
            from_ms: parse_bound(from, "from", false)?,
            to_ms: parse_bound(to, "to", true)?,
            ..RangeQuery::default()
        };
        if query.to_ms <= query.from_ms {
            bail!("to: {to} is not after from ({from})");
        }
        if let Some(filter) = &args.filter {
            parse_filter(filter, &mut query)?;
        }
        if let Some(tenant) = &args.scope_tenant {
            if let Some(other) = query.organizations.iter().find(|o| *o != tenant) {
                bail!("filter: organization={other} is outside tenant {tenant:?}, the only one this export may read");
            }
            query.organizations = vec![tenant.clone()];
        }
        let schemas = &app.schemas;
        let mut default_schema = app.config.schema.clone();
        let archive = match &args.source {
            None => None,
            Some(source) => {
                let endpoint = endpoints::open(
                    source,
                    Some(&app.config),
                    &app.exporter.destinations(),
                    "source",
                )?;
                let schema_name = match &endpoint.destination {
                    Some(name) => app
                        .config
                        .destinations
                        .iter()
                        .find(|d| &d.name == name)
                        .map(|d| d.schema.clone())
                        .unwrap_or_default(),
                    None => args
                        .source_schema
                        .clone()
                        .unwrap_or_else(|| auditsync_catalog::DEFAULT_SCHEMA.to_string()),
                };
                default_schema = schema_name.clone();
                Some(Archive {
                    sink: endpoint.sink,
                    namespace: app.config.namespace.clone(),
                    schema: schemas.get(&schema_name).context("source_schema")?,
                })
            }
        };
        let schema_name = args.schema.clone().unwrap_or(default_schema);
        let schema = schemas.get(&schema_name).context("schema")?;
        let format_name = args.format.as_deref().unwrap_or("csv");
        // Downloads are made for spreadsheets: CSV cells are guarded unless asked otherwise.
        let mut format_options = serde_json::Map::new();
        if format_name == "csv" {
            format_options.insert("formula_guard".into(), (!args.raw_csv).into());
        } else if args.raw_csv {
            bail!("raw_csv: applies to the csv format only, not `{format_name}`");
        }
        let formatter = registry::build_formatter(format_name, &format_options)
            .map_err(|e| anyhow!("format: {e}"))?;
        let compression = Compression::parse(args.compression.as_deref().unwrap_or("none"), None)
            .map_err(|e| anyhow!("compression: {e}"))?;
        let format = FileFormat {
            schema,
            formatter,
            compression,
        };
        Ok(Self {
            query,
            extension: format.extension(),
            format,
            archive,
        })
    }

    /// Runs the export into `out`.
    pub async fn run<W: std::io::Write + Send + 'static>(
        &self,
        app: &App,
        out: W,
        progress: Arc<RangeProgress>,
    ) -> anyhow::Result<(RangeReport, W)> {
        Ok(export_range(
            app.store.clone(),
            self.archive.clone(),
            &self.query,
            &self.format,
            out,
            progress,
        )
        .await?)
    }
}
