//! `auditsync gc`, `verify`, `status` and `token new`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use auditsync_engine::gc::{gc_once, GcOutcome};
use auditsync_engine::health::rfc3339;
use auditsync_engine::schedule::EXPORT_SCHEDULE;
use auditsync_store::DestinationFailure;
use clap::Subcommand;

use crate::app::App;
use crate::own_events;
use crate::schedules;

#[derive(Debug, Subcommand)]
pub(crate) enum TokenAction {
    /// Print a new random token and its hash for `ingest.token_hashes` or `admin.tokens`.
    New,
}

pub(crate) async fn gc(app: &App) -> anyhow::Result<ExitCode> {
    let takers = app.exporter.takers().await;
    match gc_once(app.store.as_ref(), &takers, app.config.disable_uevents_gc).await? {
        GcOutcome::Disabled => println!("gc: disabled by disableUeventsGC; nothing deleted"),
        GcOutcome::Deleted(n) => println!("gc: deleted {n} exported events"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn verify(app: &App) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    match app.store.check_writable().await {
        Ok(()) => println!("store ({}): ok", app.store.describe()),
        Err(e) => {
            failed = true;
            println!("store ({}): FAILED: {e}", app.store.describe());
        }
    }
    let mut outcomes = serde_json::Map::new();
    for d in app.exporter.destinations().iter() {
        match d.sink.verify("").await {
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
        app.record_own(event)
            .await
            .context("cannot record the verify run")?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) async fn status(app: &App) -> anyhow::Result<ExitCode> {
    app.store.checked().await;
    if let Some(damage) = app.store.corruption() {
        println!(
            "store ({}): CORRUPTED: {damage}; writes are refused (see docs/operations.md, \"A corrupted store\")",
            app.store.describe()
        );
        return Ok(ExitCode::FAILURE);
    }
    let stats = app.store.stats().await?;
    println!(
        "store: {} events held, sequence {}..={}",
        stats.events,
        stats.first_seq.unwrap_or(stats.last_seq + 1),
        stats.last_seq
    );
    let now = chrono::Utc::now();
    let schedules = schedules::configured(&app.config)?;
    let runs = app.store.schedule_runs().await?;
    let next_export = schedules
        .iter()
        .find(|s| s.name == EXPORT_SCHEDULE)
        .map(|s| schedules::next_fire_summary(&s.schedule, now))
        .unwrap_or_default();
    // Recorded by whichever process ran each destination last (a store that keeps no
    // such records leaves the service's /ui and admin API as the only place to see them).
    let failures: std::collections::HashMap<String, DestinationFailure> = app
        .store
        .destination_failures()
        .await?
        .unwrap_or_default()
        .into_iter()
        .collect();
    for d in app.exporter.destinations().iter() {
        let backlog = app.store.backlog_of(&d.name, d.tenant.as_deref()).await?;
        let pending = app.store.pending_batch(&d.name).await?;
        println!(
            "{}: cursor {}, backlog {} events{}, next export {next_export}",
            d.name,
            backlog.cursor,
            backlog.events,
            pending
                .map(|b| format!(", pending batch {}", d.backend_key_of_recorded(&b.key)))
                .unwrap_or_default()
        );
        if let Some(f) = failures.get(&d.name) {
            println!(
                "{}: FAILING since {} ({} failed run(s)), next attempt at {}: {}",
                d.name,
                rfc3339(f.since_ms),
                f.failures,
                rfc3339(f.next_attempt_ms),
                f.last_error
            );
        }
        if app.config.manifests.is_some() {
            let head = app.store.manifest_head(&d.name).await?;
            println!(
                "{}: {}",
                d.name,
                head.map_or("no manifest written yet".into(), |h| format!(
                    "last manifest {} (up to seq {}), written {}",
                    h.number,
                    h.last_seq,
                    schedules::utc(
                        chrono::DateTime::from_timestamp_millis(h.created_ms).unwrap_or_default()
                    )
                ))
            );
        }
    }
    for s in &schedules {
        let last = runs
            .iter()
            .find(|r| r.schedule == s.name)
            .map_or("none recorded".into(), schedules::run_summary);
        println!(
            "schedule {}: next {}, last run {last}",
            s.name,
            schedules::next_fire_summary(&s.schedule, now)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn new_token() -> anyhow::Result<ExitCode> {
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
