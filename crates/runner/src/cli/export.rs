//! `auditsync export`: every destination now (`--once`), or one time range to a file.

use std::process::ExitCode;

use anyhow::Context;

use crate::app::App;
use crate::{own_events, progress, range_export};

pub(crate) async fn export(app: &App) -> anyhow::Result<ExitCode> {
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
