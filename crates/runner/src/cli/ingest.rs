//! `auditsync ingest FILE|-`: one input, streamed, stored whole or not at all.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context};
use auditsync_engine::bulk::{ingest_reader, IngestProgress};

use crate::app::App;
use crate::progress;

pub(crate) async fn ingest(app: &App, input: &str) -> anyhow::Result<ExitCode> {
    if !app.config.enable_user_events {
        bail!("enableUserEvents is false: user events are disabled and nothing was recorded");
    }
    let (reader, size): (Box<dyn std::io::Read + Send>, Option<u64>) = if input == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(input).with_context(|| format!("cannot read {input}"))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let shown = Arc::new(IngestProgress::default());
    let counts = shown.clone();
    let bar =
        progress::Progress::start("ingest", progress::Unit::Bytes, move || progress::Reading {
            done: counts.bytes_read.load(Ordering::Relaxed),
            total: size,
            message: format!("{} events", counts.events.load(Ordering::Relaxed)),
        });
    let result = ingest_reader(&app.ingestor, reader, shown).await;
    drop(bar);
    let summary = result.with_context(|| format!("{input}: rejected, nothing was stored"))?;
    let flagged = match &summary.first_flagged {
        None => String::new(),
        Some(first) => {
            format!(
                "; {} break the schema's rules and were kept (permissive validation), first: {}: {}",
                summary.flagged, first.at, first.error
            )
        }
    };
    println!(
        "ingested {} events ({} already stored, ignored){flagged}",
        summary.stored, summary.duplicates
    );
    Ok(ExitCode::SUCCESS)
}
