//! `auditsync`: records audit events in a durable store and exports them as NDJSON or CSV
//! files to object stores on a schedule.

mod app;
mod config;
mod plugins;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use auditsync_engine::cron::Schedule;
use auditsync_engine::gc::{gc_once, GcOutcome};
use auditsync_store::Store;
use clap::{Parser, Subcommand};

use crate::app::App;
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
    /// Export what is stored to every destination.
    Export {
        /// Run one export now, as the schedule would.
        #[arg(long)]
        once: bool,
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
    /// Run the export and GC schedules until SIGTERM or SIGINT.
    Run,
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Ingest { input } => ingest(&app, &input).await,
            Command::Export { once } => {
                if !once {
                    bail!("say `export --once` to export now; `auditsync run` exports on `ueventsSchedule`");
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
            Command::Run => run_schedules(&app).await,
            Command::Sinks | Command::Config { .. } => unreachable!("handled above"),
        }
    })
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
    let events = app
        .ingestor
        .parse_ndjson(&bytes)
        .with_context(|| format!("{input}: rejected, nothing was stored"))?;
    let appended = app.ingestor.append(events).await?;
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    println!(
        "ingested {} events ({} already stored, ignored)",
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
    for d in app.exporter.destinations() {
        match d.sink.verify(&d.prefix).await {
            Ok(()) => println!("{} ({}): ok", d.name, d.sink.describe()),
            Err(e) => {
                failed = true;
                println!("{} ({}): FAILED: {e}", d.name, d.sink.describe());
            }
        }
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
            stats.last_seq.saturating_sub(cursor),
            pending
                .map(|b| format!(", pending batch {}", b.key))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_schedules(app: &App) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let export_schedule = Schedule::parse(&app.config.uevents_schedule)?;
    let gc_schedule = Schedule::parse(&app.config.uevents_gc_schedule)?;
    if !app.config.enable_user_events {
        tracing::warn!(
            "enableUserEvents is false: nothing will be recorded; stored events are still exported"
        );
    }
    // Created once, so a signal that arrives during an export is not missed.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let now = chrono::Utc::now();
    let mut next_export = export_schedule.next_after(now);
    let mut next_gc = gc_schedule.next_after(now);
    tracing::info!(?next_export, ?next_gc, "schedules started");
    loop {
        let Some(next) = [next_export, next_gc].into_iter().flatten().min() else {
            bail!("neither schedule will ever fire");
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        let now = chrono::Utc::now();
        if next_export.is_some_and(|t| t <= now) {
            export(app).await?;
            next_export = export_schedule.next_after(chrono::Utc::now());
        }
        if next_gc.is_some_and(|t| t <= now) {
            gc(app).await?;
            next_gc = gc_schedule.next_after(chrono::Utc::now());
        }
    }
    tracing::info!("stopping");
    Ok(ExitCode::SUCCESS)
}
