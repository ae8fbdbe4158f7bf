//! `auditsync prove`: the inclusion proof of one record, checked offline by
//! `verify-archive --proof`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use auditsync_engine::proof::{locate_event, prove};

use crate::app::App;

/// `auditsync prove` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ProveArgs {
    /// The event's id (while the store still holds the event).
    #[arg(required_unless_present = "file")]
    event_id: Option<String>,
    /// The destination whose files hold it (default: the only one).
    #[arg(long)]
    destination: Option<String>,
    /// Instead of an id: the file's key, relative to the destination's root.
    #[arg(long, requires = "record", conflicts_with = "event_id")]
    file: Option<String>,
    /// With --file: the record's number in the file, from 1.
    #[arg(long, requires = "file")]
    record: Option<u64>,
    /// Write the proof here (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) async fn prove_command(app: &App, args: &ProveArgs) -> anyhow::Result<ExitCode> {
    let destinations = app.exporter.destinations();
    let dest = match &args.destination {
        Some(name) => destinations.iter().find(|d| &d.name == name),
        None if destinations.len() == 1 => destinations.first(),
        None => bail!(
            "say which destination with --destination (one of: {})",
            app.exporter.destination_names().join(", ")
        ),
    }
    .ok_or_else(|| {
        anyhow!(
            "no destination `{}`; destinations: {}",
            args.destination.as_deref().unwrap_or_default(),
            app.exporter.destination_names().join(", ")
        )
    })?;
    let (file, record) = match (&args.event_id, &args.file, args.record) {
        (_, Some(file), Some(record)) => (file.clone(), record),
        (Some(id), _, _) => locate_event(app.store.as_ref(), &dest.name, id).await?,
        _ => bail!("give an event id, or --file KEY --record N"),
    };
    let proof = prove(dest.sink.as_ref(), &app.config.namespace, &file, record)
        .await
        .with_context(|| format!("prove record {record} of `{file}` in `{}`", dest.name))?;
    let text = serde_json::to_string_pretty(&proof)? + "\n";
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("--out {}: cannot write it", path.display()))?,
        None => print!("{text}"),
    }
    eprintln!(
        "record {record} of `{file}` is listed in `{}`; check it with `auditsync verify-archive --proof FILE --public-key KEY [SOURCE]`",
        proof.manifest_key
    );
    Ok(ExitCode::SUCCESS)
}
