//! `auditsync schema` and `auditsync sinks`: what this binary knows.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum SchemaAction {
    /// Every schema: built-in, linked-in and from `schema_files`.
    List,
    /// A schema's columns, types and catalog size.
    Show {
        /// The schema's name.
        name: String,
        /// Also list every catalog entry with its required parameters.
        #[arg(long)]
        catalog: bool,
    },
    /// Print a CREATE TABLE statement matching the schema's exported files.
    Ddl {
        /// The schema's name.
        name: String,
        /// athena, bigquery, snowflake or duckdb.
        #[arg(long)]
        dialect: String,
        /// The exported files' format: ndjson or csv.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// Table name (default: the schema's name).
        #[arg(long)]
        table: Option<String>,
        /// Athena: the export tree, e.g. s3://bucket/prefix/namespace/audit/.
        #[arg(long)]
        location: Option<String>,
    },
}

pub(crate) fn schema_command(
    schemas: &auditsync_catalog::SchemaSet,
    action: &SchemaAction,
) -> anyhow::Result<ExitCode> {
    use auditsync_catalog::ddl::{self, DdlOptions};
    use std::fmt::Write as _;
    let get = |name: &str| {
        schemas.get(name).map_err(|e| match e {
            auditsync_core::ConfigError::UnknownName { name, known, .. } => {
                anyhow::anyhow!("unknown schema `{name}`; known: {}", known.join(", "))
            }
            other => other.into(),
        })
    };
    let mut out = String::new();
    match action {
        SchemaAction::List => {
            let _ = writeln!(
                out,
                "{:<16} {:>7} {:>7} {:>7}",
                "NAME", "VERSION", "COLUMNS", "ACTIONS"
            );
            for name in schemas.names() {
                let schema = get(&name)?;
                let actions = schema
                    .catalog()
                    .map_or("any".to_string(), |c| c.len().to_string());
                let _ = writeln!(
                    out,
                    "{name:<16} {:>7} {:>7} {actions:>7}",
                    schema.version(),
                    schema.columns().len()
                );
            }
        }
        SchemaAction::Show { name, catalog } => {
            let schema = get(name)?;
            let _ = writeln!(out, "schema {} version {}", schema.name(), schema.version());
            let _ = writeln!(out, "columns ({}):", schema.columns().len());
            for column in schema.columns() {
                let _ = writeln!(
                    out,
                    "  {:<28} {}",
                    column.name,
                    auditsync_catalog::type_name(column.ty)
                );
            }
            match schema.catalog() {
                None => {
                    let _ = writeln!(out, "catalog: none (any action is accepted)");
                }
                Some(c) => {
                    let _ = writeln!(out, "catalog: {} actions", c.len());
                    if *catalog {
                        for e in c.entries() {
                            let mut also: Vec<&str> = e
                                .aliases
                                .iter()
                                .chain(&e.hints)
                                .map(String::as_str)
                                .collect();
                            also.sort();
                            let _ = writeln!(
                                out,
                                "  {:<36} {:<14} requires [{}]{}",
                                e.name,
                                e.entity.as_deref().unwrap_or("-"),
                                e.required_params().join(", "),
                                if also.is_empty() {
                                    String::new()
                                } else {
                                    format!(" also: {}", also.join(", "))
                                }
                            );
                        }
                    }
                }
            }
        }
        SchemaAction::Ddl {
            name,
            dialect,
            format,
            table,
            location,
        } => {
            let schema = get(name)?;
            let dialect: ddl::Dialect = dialect
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--dialect: {e}"))?;
            let options = DdlOptions {
                table: table.clone().unwrap_or_else(|| schema.name().to_string()),
                format: format
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--format: {e}"))?,
                location: location.clone(),
            };
            let _ = write!(
                out,
                "{}",
                ddl::create_table(schema.as_ref(), dialect, &options)
            );
        }
    }
    print_all(&out)
}

/// Writes command output; a closed pipe (`| head`) ends the command quietly.
pub(crate) fn print_all(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub(crate) fn print_plugins() {
    let list = |names: Vec<&str>| names.join(", ");
    println!("sinks: {}", list(auditsync_core::registry::sink_names()));
    println!(
        "formatters: {}",
        list(auditsync_core::registry::formatter_names())
    );
    println!(
        "schemas: {}",
        list(auditsync_core::registry::schema_names())
    );
    println!("compression: none, gzip, zstd");
    println!("stores: {}", list(auditsync_store::registry::store_names()));
}
