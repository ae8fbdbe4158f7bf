//! `auditsync sync`: copy what a target lacks, verified, never overwriting.

use std::process::ExitCode;

use anyhow::Context;

use crate::app::App;
use crate::{endpoints, progress};

/// `auditsync sync` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
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

pub(crate) async fn sync_command(app: Option<&App>, args: &SyncArgs) -> anyhow::Result<ExitCode> {
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
    let destinations: std::sync::Arc<[auditsync_engine::Destination]> = app.map_or_else(
        || std::sync::Arc::from(Vec::new()),
        |a| a.exporter.destinations(),
    );
    let source = endpoints::open(from, config, &destinations, "--from")?;
    let target = endpoints::open(to, config, &destinations, "--to")?;
    let options = SyncOptions {
        prefix: prefix.clone(),
        dry_run: *dry_run,
        concurrency: (*concurrency).max(1),
    };
    let progress = std::sync::Arc::new(SyncProgress::default());
    let shown = progress.clone();
    let bar = progress::Progress::start("sync", progress::Unit::Items("objects"), move || {
        progress::Reading {
            done: shown.done.load(Ordering::Relaxed),
            total: Some(shown.total.load(Ordering::Relaxed)),
            message: format!(
                "{} copied",
                progress::megabytes(shown.bytes.load(Ordering::Relaxed))
            ),
        }
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
