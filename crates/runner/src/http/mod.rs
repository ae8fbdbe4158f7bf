//! `auditsync run`: the HTTP API (ingest, exports, health, metrics), the schedules, and a
//! clean shutdown.

mod auth;
mod body;
mod export_api;
mod ingest;
mod tenants_api;
mod ui;

use auth::*;
use body::*;
use export_api::*;
use ingest::*;
use tenants_api::*;
use ui::*;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use auditsync_engine::ingest::{IngestError, Ingestor};
use auditsync_engine::recorder::Recorder;
use auditsync_engine::schedule::{
    sync_schedule_name, ScheduledSync, Scheduler, EXPORT_SCHEDULE, GC_SCHEDULE,
};
use auditsync_engine::sync::SyncOptions;
use auditsync_engine::Exporter;
use auditsync_store::Store;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::app::App;
use crate::exports::{JobStatus, Jobs};
use crate::metrics::{Backlog, Metrics};
use crate::own_events::{own_event, params_of};
use crate::range_export::RangeArgs;

struct Shared {
    app: Arc<App>,
    jobs: Arc<Jobs>,
    /// The admin tokens: name, SHA-256 digest, tenant scope.
    admins: Vec<crate::config::AdminKey>,
    ingestor: Ingestor,
    recorder: Recorder,
    store: Arc<dyn Store>,
    exporter: Arc<Exporter>,
    metrics: Arc<Metrics>,
    /// SHA-256 digests of the accepted bearer tokens; empty means no authentication.
    tokens: Vec<[u8; 32]>,
    /// `ingest.max_body_bytes`.
    max_body: usize,
    /// One change of the tenant files at a time.
    tenant_edits: tokio::sync::Mutex<()>,
    /// `true` once the store has given its verdict at open (and a changed config is
    /// recorded): ingest waits for it, and `/healthz` answers `starting` until then.
    started: watch::Receiver<bool>,
}

fn router(shared: Arc<Shared>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/events", post(post_events).fallback(method_not_allowed))
        .route(
            "/v1/exports",
            post(create_export)
                .get(list_exports)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/exports/{id}",
            get(get_export).fallback(method_not_allowed),
        )
        .route(
            "/v1/exports/{id}/download",
            get(download_export).fallback(method_not_allowed),
        )
        .route(
            "/v1/tenants",
            get(list_tenants).fallback(method_not_allowed),
        )
        .route("/v1/config", get(get_config).fallback(method_not_allowed))
        .route("/ui", get(ui_page).fallback(method_not_allowed))
        .route("/ui/app.js", get(ui_script).fallback(method_not_allowed))
        .route(
            "/v1/tenants/{tenant}/destinations/{name}/verify",
            post(verify_tenant_destination).fallback(method_not_allowed),
        )
        .route(
            "/v1/tenants/{tenant}/destinations",
            get(tenant_destinations).fallback(method_not_allowed),
        )
        .route(
            "/v1/tenants/{tenant}/destinations/{name}",
            get(get_tenant_destination)
                .put(put_tenant_destination)
                .delete(delete_tenant_destination)
                .fallback(method_not_allowed),
        )
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/livez", get(livez).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

/// Refuses an unauthenticated service on anything but loopback.
fn check_exposure(addr: SocketAddr, tokens: &[[u8; 32]]) -> anyhow::Result<()> {
    if tokens.is_empty() && !addr.ip().is_loopback() {
        bail!(
            "config key `ingest.listen`: {addr} is not a loopback address and `ingest.token_hashes` is empty; \
             refusing to accept events without authentication (add a hash from `auditsync token new`)"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Records `auditsync.config.changed` when the config differs from the one the service last
/// started with (secrets masked in both), so that configuration is audited like any action.
async fn record_config_change(app: &App, recorder: &Recorder) -> anyhow::Result<()> {
    let current = app.config.masked();
    let state = app
        .config
        .admin
        .exports_dir(&app.config.store)
        .join("last-config.json");
    let previous: Option<serde_json::Value> = std::fs::read(&state)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if previous.as_ref() == Some(&current) {
        return Ok(());
    }
    let mut event = own_event("auditsync.config.changed", "auditsync");
    event.previous = previous;
    event.next = Some(current.clone());
    recorder.record(event).await?;
    std::fs::write(&state, serde_json::to_vec_pretty(&current)?)
        .with_context(|| format!("cannot write {}", state.display()))?;
    Ok(())
}

/// Serves on `ingest.listen` until SIGTERM/SIGINT: stops accepting, answers requests in
/// flight, finishes an export in progress, then returns.
pub async fn serve(app: App) -> anyhow::Result<()> {
    let addr = app.config.ingest.listen_addr()?;
    // Before binding, so that an exposed address is never bound (`serve_on` checks the
    // address it is handed again, for callers that bind their own).
    check_exposure(addr, &app.config.ingest.token_digests()?)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("config key `ingest.listen`: cannot listen on {addr}"))?;
    serve_on(app, listener, shutdown_signal()).await
}

/// Serves the HTTP API and runs the schedules on a listener the caller bound, until
/// `shutdown` completes; then stops accepting, answers requests in flight, finishes an
/// export in progress, and returns.
///
/// It answers at once, even while the store is still checking itself at open (SQLite's
/// integrity check reads the whole file: seconds for a large store). Until then `/healthz`
/// answers 503 `starting`, `/livez` 200, and ingest requests wait for the verdict.
pub async fn serve_on(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let tokens = app.config.ingest.token_digests()?;
    check_exposure(local, &tokens)?;
    let schedules = crate::schedules::configured(&app.config)?;
    let schedule_named = |name: &str| {
        schedules
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.schedule.clone())
            .with_context(|| format!("no `{name}` schedule"))
    };
    let export_schedule = schedule_named(EXPORT_SCHEDULE)?;
    let gc_schedule = schedule_named(GC_SCHEDULE)?;
    if !app.config.enable_user_events {
        tracing::warn!("enableUserEvents is false: ingest answers 403 and records nothing; stored events are still exported");
    }
    if tokens.is_empty() {
        tracing::warn!(%local, "no ingest.token_hashes: ingest is unauthenticated (loopback only)");
    }
    let admins = app.config.admin.token_digests()?;
    let (jobs, resume) = Jobs::open(app.config.admin.exports_dir(&app.config.store))?;
    let jobs = Arc::new(jobs);
    jobs.prune(app.config.admin.keep_exports());
    let metrics = Arc::new(Metrics::default());
    metrics.schedules_registered(
        schedules
            .iter()
            .map(|s| (s.name.clone(), s.schedule.clone()))
            .collect(),
    );
    let store: Arc<dyn Store> = app.store.clone();
    let recorder = Recorder::start_with(store, app.redactor.clone());
    let app = Arc::new(app);
    let (started, started_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        app: app.clone(),
        jobs: jobs.clone(),
        admins,
        ingestor: app
            .ingestor
            .clone()
            .with_max_events(app.config.ingest.max_events_per_request),
        // HTTP requests reach `commit` already redacted by the ingestor; the recorder's own
        // redactor applies to `record` calls only.
        recorder,
        store: app.store.clone(),
        exporter: app.exporter.clone(),
        metrics: metrics.clone(),
        tokens,
        max_body: app.config.ingest.max_body_bytes,
        tenant_edits: tokio::sync::Mutex::new(()),
        started: started_rx,
    });
    let mut scheduler = Scheduler::new(app.exporter.clone(), app.store.clone())
        .export_on(export_schedule)
        .gc_on(gc_schedule)
        .gc_disabled(app.config.disable_uevents_gc)
        .observed_by(metrics.clone());
    for sync in &app.config.syncs {
        let open = |spec: &str, side: &str| {
            crate::endpoints::open(
                spec,
                Some(&app.config),
                &app.exporter.destinations(),
                &format!("syncs `{}` {side}", sync.name),
            )
        };
        let (source, target) = (open(&sync.from, "from")?, open(&sync.to, "to")?);
        metrics.sync_registered(&sync.name);
        scheduler = scheduler.sync_on(ScheduledSync {
            name: sync.name.clone(),
            source: source.sink,
            target: target.sink,
            schedule: schedule_named(&sync_schedule_name(&sync.name))?,
            options: SyncOptions {
                prefix: sync.prefix.clone(),
                dry_run: false,
                concurrency: sync.concurrency,
            },
        });
    }

    // Tests and supervisors read this line to learn the port (e.g. with `listen` port 0).
    println!("listening on http://{local}");
    tracing::info!(%local, "ingest listening");
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let server = {
        let mut stop = stop.clone();
        let router = router(shared.clone(), app.config.ingest.max_body_bytes);
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        })
    };
    // Exports read ahead of the store's check at open, and wait for it to write.
    let schedules = scheduler.start();
    let checking = std::time::Instant::now();
    if app.store.holds_writes() {
        tracing::info!("the store is checking its integrity at open: /healthz answers `starting`, and ingest waits for the verdict");
    }
    tokio::spawn(crate::tenant_watch::watch(app.clone(), stop.clone()));

    // Once the store has given its verdict: a corrupted one still serves (ingest answers
    // 503, and /healthz and /metrics say why) so that producers hold their events and
    // monitoring sees the cause; a sound one records a changed config before any ingest.
    let opened = tokio::select! {
        opened = settle(&app, &shared.recorder) => opened,
        _ = stop.wait_for(|stop| *stop) => Ok(()),
    };
    if let Err(e) = opened {
        server.abort();
        schedules.shutdown().await;
        return Err(e);
    }
    if *stop.borrow() {
        // Ingest held for the verdict is refused rather than left waiting.
        drop(started);
    } else {
        for id in resume {
            tracing::info!(job = %id, "export job resumed after a restart");
            tokio::spawn(jobs.clone().run(app.clone(), id));
        }
        let _ = started.send(true);
        tracing::info!(
            waited_ms = checking.elapsed().as_millis() as u64,
            "the store is open: ingest proceeds"
        );
    }

    server
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    schedules.shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Waits for the store's verdict at open, then records a changed config; damage is
/// reported instead of failing.
async fn settle(app: &App, recorder: &Recorder) -> anyhow::Result<()> {
    app.store.checked().await;
    if app.store.corruption().is_none() {
        match record_config_change(app, recorder).await {
            Err(_) if app.store.corruption().is_some() => {}
            other => other?,
        }
    }
    if let Some(damage) = app.store.corruption() {
        tracing::error!(store = %app.store.describe(), %damage, "the store is corrupted: serving with writes refused; see docs/operations.md");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_service_only_on_loopback() {
        assert!(check_exposure("127.0.0.1:1".parse().unwrap(), &[]).is_ok());
        assert!(check_exposure("[::1]:1".parse().unwrap(), &[]).is_ok());
        let err = check_exposure("0.0.0.0:1".parse().unwrap(), &[]).unwrap_err();
        assert!(err.to_string().contains("`ingest.listen`"), "{err}");
        assert!(check_exposure("0.0.0.0:1".parse().unwrap(), &[[1; 32]]).is_ok());
    }
}
