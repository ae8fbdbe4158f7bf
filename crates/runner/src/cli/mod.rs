//! The stock CLI: argument parsing and dispatch to one module per command family.

mod admin;
mod archive;
mod export;
mod ingest;
mod prove;
mod schedule;
mod schema;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::Config;
use crate::range_export;
use admin::TokenAction;
use archive::{KeyAction, ManifestAction, VerifyArchiveArgs};
use prove::ProveArgs;
use schedule::ScheduleArgs;
use schema::SchemaAction;
use sync::SyncArgs;

/// Records audit events and ships them as files to your object store.
#[derive(Debug, Parser)]
#[command(name = "auditsync", version, about, long_about = None)]
pub(crate) struct Cli {
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
pub(crate) enum Command {
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
    /// Show the store's counts and each destination's cursor, backlog and next export.
    Status,
    /// Show when each schedule fires next (UTC and its time zone) and when it last ran, or
    /// try an expression: `auditsync schedule "CRON_TZ=Europe/Berlin 0 30 2 * * *"`.
    Schedule(ScheduleArgs),
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
    /// Make the Ed25519 key that signs manifests.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Write the signed manifests that are due (`backfill`: cover files exported earlier).
    Manifest {
        #[command(subcommand)]
        action: ManifestAction,
    },
    /// Print the inclusion proof of one record (by event id, or --file and --record): its
    /// manifest's signed header and the Merkle path to its file's line.
    Prove(ProveArgs),
    /// Check an exported tree against its signed manifests, offline: SOURCE is a
    /// destination's name, a sink URL or a local copy. Exit 0 only when everything verifies.
    VerifyArchive(VerifyArchiveArgs),
    /// List the schemas, show one, or print the CREATE TABLE that loads its files.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Validate the config and print it with defaults filled in and secrets masked.
    Check,
}

/// Runs the CLI: parses the arguments, starts logging, links the stock plugins and runs the
/// command. A third party's binary links its own plugins first, then calls this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    crate::plugins::link();
    // One runtime for the whole process: its sinks may share their clients.
    #[cfg(feature = "s3")]
    auditsync_s3::share_clients();
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
        schema::print_plugins();
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Token {
        action: TokenAction::New,
    } = cli.command
    {
        return admin::new_token();
    }
    if let Command::Schema { action } = &cli.command {
        // Custom schemas come from the config's `schema_files`; without a config file the
        // built-in and linked-in schemas are still there.
        let schemas = if cli.config.exists() {
            load_config(&cli.config)?.schemas()?
        } else {
            auditsync_catalog::SchemaSet::registered()
        };
        return schema::schema_command(&schemas, action);
    }
    if let Command::Sync(args) = &cli.command {
        // URLs need no config; destination names do, when there is one.
        let app = if cli.config.exists() {
            Some(App::build(load_config(&cli.config)?)?)
        } else {
            None
        };
        return runtime()?.block_on(sync::sync_command(app.as_ref(), args));
    }
    if let Command::Key { action } = &cli.command {
        return archive::key_command(action);
    }
    if let Command::VerifyArchive(args) = &cli.command {
        // A local copy and public keys need no config; a destination's name does.
        let app = if cli.config.exists() {
            Some(App::build(load_config(&cli.config)?)?)
        } else {
            None
        };
        return runtime()?.block_on(archive::verify_archive_command(app.as_ref(), args));
    }
    if let Command::Schedule(args) = &cli.command {
        if !args.needs_config() {
            return schedule::schedule_command(args, Vec::new(), &[]);
        }
        let app = App::build(load_config(&cli.config)?)?;
        let runs = runtime()?.block_on(app.store.schedule_runs())?;
        return schedule::schedule_command(args, crate::schedules::configured(&app.config)?, &runs);
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
        let tenants = app.tenants();
        if app.config.destinations.is_empty() && tenants.is_empty() {
            println!("note: no destinations: events will be stored but never exported");
        }
        if let Some(dir) = &app.config.tenants_dir {
            let destinations: usize = tenants.iter().map(|t| t.destinations.len()).sum();
            println!(
                "tenants: {} with {destinations} destination(s), from {}",
                tenants.len(),
                dir.display()
            );
        }
        let now = chrono::Utc::now();
        for s in crate::schedules::configured(&app.config)? {
            println!(
                "schedule {} ({}): next {}",
                s.name,
                s.key,
                crate::schedules::next_fire_summary(&s.schedule, now)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let app = App::build(config)?;
    runtime()?.block_on(async move {
        match cli.command {
            Command::Ingest { input } => ingest::ingest(&app, &input).await,
            Command::Export { once, range, out } => {
                if once && (range.any() || out.is_some()) {
                    bail!("--once exports every destination; it takes no range (--from, --to, --out, ...)");
                }
                if range.any() || out.is_some() {
                    return export::export_range(&app, &range, out.as_deref()).await;
                }
                if !once {
                    bail!("say `export --once` to export now, or `export --from T1 --to T2 --out FILE` for a range; `auditsync run` exports on `ueventsSchedule`");
                }
                export::export(&app).await
            }
            Command::Gc { once } => {
                if !once {
                    bail!("say `gc --once` to collect now; `auditsync run` collects on `ueventsGCSchedule`");
                }
                admin::gc(&app).await
            }
            Command::Verify => admin::verify(&app).await,
            Command::Manifest { action } => archive::manifest_command(&app, &action).await,
            Command::Prove(args) => prove::prove_command(&app, &args).await,
            Command::Status => admin::status(&app).await,
            Command::Run => crate::http::serve(app).await.map(|()| ExitCode::SUCCESS),
            Command::Sinks
            | Command::Config { .. }
            | Command::Token { .. }
            | Command::Schema { .. }
            | Command::Schedule(_)
            | Command::Key { .. }
            | Command::VerifyArchive(_)
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
