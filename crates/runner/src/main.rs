//! `auditsync`: records audit events in a durable store and exports them as NDJSON or CSV
//! files to object stores on a schedule.

mod app;
mod config;
mod endpoints;
mod exports;
mod metrics;
mod own_events;
mod plugins;
mod progress;
mod range_export;
mod service;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use auditsync_engine::gc::{gc_once, GcOutcome};
use auditsync_store::Store;
use clap::{Parser, Subcommand};

use crate::app::App;

// Ingest and export allocate many small strings and maps; mimalloc handles that churn far
// better than glibc's allocator (measured: see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::config::Config;

/// Records audit events and ships them as files to your object store.
#[derive(Debug, Parser)]
#[command(name = "auditsync", version, about, long_about = None)]
struct Cli {
    /// The JSON config file.
    #[arg(
        long,
        short,
        global = true,
        env = "AUDITSYNC_CONFIG",
        default_value = "auditsync.json"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store NDJSON events from FILE (or `-` for stdin): all of them, or none if one is bad.
    Ingest {
        /// NDJSON file, or `-` for standard input.
        input: String,
    },
    /// Export what is stored to every destination (`--once`), or one time range to a file
    /// (`--from/--to ... --out FILE`).
    Export {
        /// Run one export now, as the schedule would.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        range: range_export::RangeArgs,
        /// Where the range goes: a file (written whole or not at all) or `-` for stdout.
        #[arg(long)]
        out: Option<String>,
    },
    /// Delete events that every destination has.
    Gc {
        /// Run one garbage collection now, as the schedule would.
        #[arg(long)]
        once: bool,
    },
    /// Check that every destination can be written, read and deleted, and the store written.
    Verify,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// List the sinks, formatters and schemas this binary was built with.
    Sinks,
    /// Show the store's counts and each destination's cursor and backlog.
    Status,
    /// Serve HTTP ingest and run the export and GC schedules until SIGTERM or SIGINT.
    Run,
    /// Manage bearer tokens (ingest and admin).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Copy the objects the target lacks from SRC to DST (names or URLs), verified, never
    /// overwriting; exit 1 on a conflict.
    Sync(SyncArgs),
    /// List the schemas, show one, or print the CREATE TABLE that loads its files.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
}

/// `auditsync sync` arguments.
#[derive(Debug, clap::Args)]
struct SyncArgs {
    /// Source: a destination's name or a sink URL (s3://, az://, gs://, file://).
    #[arg(long)]
    from: String,
    /// Target: a destination's name or a sink URL.
    #[arg(long)]
    to: String,
    /// Only keys under this prefix (relative to both roots).
    #[arg(long, default_value = "")]
    prefix: String,
    /// List and compare only; copy nothing.
    #[arg(long)]
    dry_run: bool,
    /// Objects copied at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[derive(Debug, Subcommand)]
enum SchemaAction {
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

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Print a new random token and its hash for `ingest.token_hashes` or `admin.tokens`.
    New,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the config and print it with defaults filled in and secrets masked.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    plugins::link();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path, std::env::vars())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Sinks = cli.command {
        print_plugins();
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Token {
        action: TokenAction::New,
    } = cli.command
    {
        return new_token();
    }
    if let Command::Schema { action } = &cli.command {
        // Custom schemas come from the config's `schema_files`; without a config file the
        // built-in and linked-in schemas are still there.
        let schemas = if cli.config.exists() {
            load_config(&cli.config)?.schemas()?
        } else {
            auditsync_catalog::SchemaSet::registered()
        };
        return schema_command(&schemas, action);
    }
    if let Command::Sync(args) = &cli.command {
        // URLs need no config; destination names do, when there is one.
        let app = if cli.config.exists() {
            Some(App::build(load_config(&cli.config)?)?)
        } else {
            None
        };
        return runtime()?.block_on(sync_command(app.as_ref(), args));
    }
    let config = load_config(&cli.config)?;
    if let Command::Config {
        action: ConfigAction::Check,
    } = cli.command
    {
        // Building checks what the registries know (sink options, formats, compression).
        let app = App::build(config)?;
        println!("{}", serde_json::to_string_pretty(&app.config.masked())?);
        if !app.config.enable_user_events {
            println!("note: enableUserEvents is false: nothing will be recorded");
        }
        if app.config.destinations.is_empty() {
            println!("note: no destinations: events will be stored but never exported");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let app = App::build(config)?;
    runtime()?.block_on(async move {
        match cli.command {
            Command::Ingest { input } => ingest(&app, &input).await,
            Command::Export { once, range, out } => {
                if once && (range.any() || out.is_some()) {
                    bail!("--once exports every destination; it takes no range (--from, --to, --out, ...)");
                }
                if range.any() || out.is_some() {
                    return export_range(&app, &range, out.as_deref()).await;
                }
                if !once {
                    bail!("say `export --once` to export now, or `export --from T1 --to T2 --out FILE` for a range; `auditsync run` exports on `ueventsSchedule`");
                }
                export(&app).await
            }
            Command::Gc { once } => {
                if !once {
                    bail!("say `gc --once` to collect now; `auditsync run` collects on `ueventsGCSchedule`");
                }
                gc(&app).await
            }
            Command::Verify => verify(&app).await,
            Command::Status => status(&app).await,
            Command::Run => service::serve(app).await.map(|()| ExitCode::SUCCESS),
            Command::Sinks
            | Command::Config { .. }
            | Command::Token { .. }
            | Command::Schema { .. }
            | Command::Sync(_) => {
                unreachable!("handled above")
            }
        }
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn sync_command(app: Option<&App>, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    use auditsync_engine::sync::{sync, SyncOptions, SyncProgress};
    use std::sync::atomic::Ordering;
    let SyncArgs {
        from,
        to,
        prefix,
        dry_run,
        concurrency,
    } = args;
    let config = app.map(|a| &a.config);
    let destinations = app.map_or(&[][..], |a| a.exporter.destinations());
    let source = endpoints::open(from, config, destinations, "--from")?;
    let target = endpoints::open(to, config, destinations, "--to")?;
    let options = SyncOptions {
        prefix: prefix.clone(),
        dry_run: *dry_run,
        concurrency: (*concurrency).max(1),
    };
    let progress = std::sync::Arc::new(SyncProgress::default());
    let shown = progress.clone();
    let bar = progress::Progress::start(move |elapsed| {
        format!(
            "sync: {}/{} objects, {} copied, {:.0} s",
            shown.done.load(Ordering::Relaxed),
            shown.total.load(Ordering::Relaxed),
            progress::megabytes(shown.bytes.load(Ordering::Relaxed)),
            elapsed.as_secs_f64()
        )
    });
    let report = sync(
        source.sink.clone(),
        target.sink.clone(),
        &options,
        progress,
        std::sync::Arc::default(),
    )
    .await
    .with_context(|| format!("sync {} -> {}: listing failed", source.label, target.label))?;
    drop(bar);
    let verb = if *dry_run { "to copy" } else { "copied" };
    println!(
        "sync {} -> {}: {} objects in the source, {} missing in the target, {} {verb} ({}), {} identical, {} conflicts, {} errors",
        source.label,
        target.label,
        report.source_objects,
        report.missing,
        if *dry_run { report.missing } else { report.copied },
        progress::megabytes(report.copied_bytes),
        report.identical,
        report.conflicts.len(),
        report.errors.len()
    );
    for c in &report.conflicts {
        println!(
            "conflict: {}: source {} bytes sha256 {}, target {} bytes sha256 {} (left alone)",
            c.key, c.source.0, c.source.1, c.target.0, c.target.1
        );
    }
    for e in &report.errors {
        println!("error: {e}");
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn schema_command(
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
fn print_all(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn print_plugins() {
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
}

async fn ingest(app: &App, input: &str) -> anyhow::Result<ExitCode> {
    if !app.config.enable_user_events {
        bail!("enableUserEvents is false: user events are disabled and nothing was recorded");
    }
    let mut bytes = Vec::new();
    if input == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(input).with_context(|| format!("cannot read {input}"))?;
    }
    let parsed = app
        .ingestor
        .parse_ndjson(&bytes)
        .with_context(|| format!("{input}: rejected, nothing was stored"))?;
    let appended = app.ingestor.append(parsed.events).await?;
    for f in &parsed.flagged {
        tracing::warn!(at = %f.at, error = %f.error, "stored an event that breaks the schema's rules (permissive validation)");
    }
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    let flagged = if parsed.flagged.is_empty() {
        String::new()
    } else {
        format!(
            "; {} break the schema's rules and were kept (permissive validation), first: {}: {}",
            parsed.flagged.len(),
            parsed.flagged[0].at,
            parsed.flagged[0].error
        )
    };
    println!(
        "ingested {} events ({} already stored, ignored){flagged}",
        appended.len() - duplicates,
        duplicates
    );
    Ok(ExitCode::SUCCESS)
}

async fn export(app: &App) -> anyhow::Result<ExitCode> {
    if app.exporter.destinations().is_empty() {
        println!("no destinations configured: nothing to export");
        return Ok(ExitCode::SUCCESS);
    }
    let reports = app.exporter.export_once().await;
    let mut failed = false;
    for r in &reports {
        match &r.error {
            None => println!(
                "{}: {} files, {} events, {} bytes",
                r.destination, r.files, r.events, r.bytes
            ),
            Some(e) => {
                failed = true;
                println!(
                    "{}: FAILED after {} files ({} events): {e}",
                    r.destination, r.files, r.events
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn export_range(
    app: &App,
    args: &range_export::RangeArgs,
    out: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use auditsync_engine::range::RangeProgress;
    use std::sync::atomic::Ordering;
    let out = out.ok_or_else(|| anyhow::anyhow!("--out: missing (a file, or - for stdout)"))?;
    let plan = range_export::RangePlan::new(app, args).map_err(|e| anyhow::anyhow!("--{e:#}"))?;
    // Taking audit data out is itself audited, before any of it is written.
    let mut event = own_events::own_event("auditsync.export.range", "cli");
    event.actor.user_name = std::env::var("USER").ok().filter(|u| !u.is_empty());
    event.params = own_events::params_of(args);
    event.params.insert("out".into(), out.into());
    app.redactor.redact(&mut event);
    app.store
        .append_events(vec![event])
        .await
        .context("cannot record the export in the store; nothing was exported")?;
    let progress = std::sync::Arc::new(RangeProgress::default());
    let shown = progress.clone();
    let bar = progress::Progress::start(move |elapsed| {
        format!(
            "export: {} events scanned, archive files {}/{}, {} written, {:.0} s",
            shown.scanned.load(Ordering::Relaxed),
            shown.files.load(Ordering::Relaxed),
            shown.files_total.load(Ordering::Relaxed),
            shown.written.load(Ordering::Relaxed),
            elapsed.as_secs_f64()
        )
    });
    let report = if out == "-" {
        plan.run(app, std::io::stdout(), progress).await?.0
    } else {
        // Written beside the target and renamed at the end: never a half-written file.
        let target = std::path::PathBuf::from(out);
        let partial = target.with_file_name(format!(
            ".{}.partial",
            target
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        ));
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("--out: cannot create {}", partial.display()))?;
        match plan.run(app, file, progress).await {
            Ok((report, file)) => {
                file.sync_all()
                    .and_then(|()| std::fs::rename(&partial, &target))
                    .with_context(|| format!("--out: cannot write {out}"))?;
                report
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        }
    };
    drop(bar);
    eprintln!(
        "exported {} events ({} from the store, {} from the archive, {} found in both written once, {} archive files read)",
        report.events, report.from_store, report.from_archive, report.duplicates, report.files
    );
    Ok(ExitCode::SUCCESS)
}

async fn gc(app: &App) -> anyhow::Result<ExitCode> {
    let names = app.exporter.destination_names();
    match gc_once(app.store.as_ref(), &names, app.config.disable_uevents_gc).await? {
        GcOutcome::Disabled => println!("gc: disabled by disableUeventsGC; nothing deleted"),
        GcOutcome::Deleted(n) => println!("gc: deleted {n} exported events"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(app: &App) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    match app.store.check_writable().await {
        Ok(()) => println!("store ({}): ok", app.store.path().display()),
        Err(e) => {
            failed = true;
            println!("store ({}): FAILED: {e}", app.store.path().display());
        }
    }
    let mut outcomes = serde_json::Map::new();
    for d in app.exporter.destinations() {
        match d.sink.verify(&d.prefix).await {
            Ok(()) => {
                println!("{} ({}): ok", d.name, d.sink.describe());
                outcomes.insert(d.name.clone(), "ok".into());
            }
            Err(e) => {
                failed = true;
                println!("{} ({}): FAILED: {e}", d.name, d.sink.describe());
                outcomes.insert(d.name.clone(), format!("failed: {:?}", e.kind).into());
            }
        }
    }
    // A verify run is audited like any other action (when the store can take it).
    if !failed || app.store.check_writable().await.is_ok() {
        let mut event = own_events::own_event("auditsync.verify.completed", "auditsync");
        event.params = outcomes;
        event.outcome.code = Some(i64::from(failed));
        app.store
            .append_events(vec![event])
            .await
            .context("cannot record the verify run")?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn status(app: &App) -> anyhow::Result<ExitCode> {
    let stats = app.store.stats().await?;
    println!(
        "store: {} events held, sequence {}..={}",
        stats.events,
        stats.first_seq.unwrap_or(stats.last_seq + 1),
        stats.last_seq
    );
    for d in app.exporter.destinations() {
        let cursor = app.store.cursor(&d.name).await?;
        let pending = app.store.pending_batch(&d.name).await?;
        println!(
            "{}: cursor {cursor}, backlog {} events{}",
            d.name,
            app.store.count_after(cursor).await?,
            pending
                .map(|b| format!(", pending batch {}", b.key))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn new_token() -> anyhow::Result<ExitCode> {
    use sha2::{Digest, Sha256};
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read /dev/urandom")?;
    let token = format!("ast_{}", hex::encode(random));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    println!("token: {token}");
    println!("hash:  \"sha256:{hash}\"");
    println!();
    println!(
        "Give the token to its holder (header `Authorization: Bearer <token>`) and add the hash"
    );
    println!("for a producer to \"ingest\": {{\"token_hashes\": [...]}}, or for an auditor to");
    println!("\"admin\": {{\"tokens\": [{{\"name\": \"...\", \"hash\": ...}}]}}. The token itself is not stored anywhere.");
    Ok(ExitCode::SUCCESS)
}
