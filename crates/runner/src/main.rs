//! `auditsync`: records audit events in a durable store and exports them as NDJSON or CSV
//! files to object stores on a schedule.

mod app;
mod config;
mod metrics;
mod plugins;
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
    /// Serve HTTP ingest and run the export and GC schedules until SIGTERM or SIGINT.
    Run,
    /// Manage ingest bearer tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Print a new random token and the hash line for `ingest.token_hashes`.
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
            Command::Run => service::serve(app).await.map(|()| ExitCode::SUCCESS),
            Command::Sinks | Command::Config { .. } | Command::Token { .. } => {
                unreachable!("handled above")
            }
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
    println!("Give the token to the producer (header `Authorization: Bearer <token>`) and add the");
    println!(
        "hash to \"ingest\": {{\"token_hashes\": [...]}}. The token itself is not stored anywhere."
    );
    Ok(ExitCode::SUCCESS)
}
