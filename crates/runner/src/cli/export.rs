//! `auditsync export`: every destination now (`--once`), or one time range to a file.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;

use crate::app::App;
use crate::{own_events, progress, range_export};

pub(crate) async fn export(app: &App) -> anyhow::Result<ExitCode> {
    if app.exporter.destinations().is_empty() {
        println!("no destinations configured: nothing to export");
        return Ok(ExitCode::SUCCESS);
    }
    let (done, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Only on a terminal: reading the cursors costs a query every half second.
    let watcher = progress::shown().then(|| {
        tokio::spawn(watch_backlogs(
            app.exporter.clone(),
            done.clone(),
            total.clone(),
        ))
    });
    let (shown_done, shown_total) = (done.clone(), total.clone());
    let destinations = app.exporter.destinations().len();
    let bar = progress::Progress::start("export", progress::Unit::Items("events"), move || {
        progress::Reading {
            done: shown_done.load(Ordering::Relaxed),
            total: Some(shown_total.load(Ordering::Relaxed)),
            message: format!(
                "over {destinations} destination{}",
                if destinations == 1 { "" } else { "s" }
            ),
        }
    });
    // Asked for now: a destination another process found failing is tried all the same.
    app.exporter.wait_out_pauses(false);
    let reports = app.exporter.export_once().await;
    if let Some(w) = watcher {
        w.abort();
    }
    drop(bar);
    let mut failed = false;
    for r in &reports {
        match &r.error {
            None => {
                println!(
                    "{}: {} files, {} events, {} bytes",
                    r.destination, r.files, r.events, r.bytes
                );
                if r.manifests.written > 0 {
                    println!(
                        "{}: {} manifests written, listing {} files",
                        r.destination, r.manifests.written, r.manifests.files
                    );
                }
                if let Some(why) = &r.skipped {
                    println!("{}: skipped: {why}", r.destination);
                }
            }
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

/// Keeps `done` and `total` (events, summed over the destinations) up to date from the
/// store's cursors while an export runs.
async fn watch_backlogs(
    exporter: Arc<auditsync_engine::export::Exporter>,
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
) -> Result<(), auditsync_store::StoreError> {
    let destinations = exporter.destinations();
    let mut backlogs = Vec::new();
    for dest in destinations.iter() {
        backlogs.push(exporter.backlog(dest).await?);
    }
    total.store(backlogs.iter().sum(), Ordering::Relaxed);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let mut exported = 0;
        for (dest, backlog) in destinations.iter().zip(&backlogs) {
            exported += backlog.saturating_sub(exporter.backlog(dest).await?);
        }
        done.store(exported, Ordering::Relaxed);
    }
}

pub(crate) async fn export_range(
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
    app.record_own(event)
        .await
        .context("cannot record the export in the store; nothing was exported")?;
    let progress = std::sync::Arc::new(RangeProgress::default());
    let shown = progress.clone();
    let bar = progress::Progress::start(
        "export",
        progress::Unit::Items("archive files"),
        move || progress::Reading {
            done: shown.files.load(Ordering::Relaxed),
            total: Some(shown.files_total.load(Ordering::Relaxed)),
            message: format!(
                "{} events scanned, {} written",
                shown.scanned.load(Ordering::Relaxed),
                shown.written.load(Ordering::Relaxed)
            ),
        },
    );
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
        "exported {} events ({} from the store, {} from the archive, {} found in both written once, {} archive files read, {} skipped by their manifests' time bounds)",
        report.events, report.from_store, report.from_archive, report.duplicates, report.files, report.files_skipped
    );
    Ok(ExitCode::SUCCESS)
}
