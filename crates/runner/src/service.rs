//! `auditsync run`: HTTP ingest, the export and GC schedules, and a clean shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use auditsync_engine::cron::Schedule;
use auditsync_engine::gc::{gc_once, GcOutcome};
use auditsync_engine::ingest::{IngestError, Ingestor};
use auditsync_engine::recorder::Recorder;
use auditsync_engine::Exporter;
use auditsync_store::{EncodedEvent, SqliteStore, Store};
use axum::body::Bytes;
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
    /// (name, SHA-256 digest) of the admin tokens.
    admins: Vec<(String, [u8; 32])>,
    ingestor: Ingestor,
    recorder: Recorder,
    store: Arc<SqliteStore>,
    exporter: Arc<Exporter>,
    metrics: Arc<Metrics>,
    /// SHA-256 digests of the accepted bearer tokens; empty means no authentication.
    tokens: Vec<[u8; 32]>,
}

/// An API error: a status and a JSON body `{"error": {"code", "message"}}`.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        response
    }
}

fn api_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let status = match &e {
            IngestError::Disabled => StatusCode::FORBIDDEN,
            IngestError::Malformed { .. } | IngestError::Empty => StatusCode::BAD_REQUEST,
            IngestError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::TooLarge { .. } | IngestError::TooMany { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        api_error(status, e.reason(), e.to_string())
    }
}

/// Compares two digests in time independent of where they differ.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(headers: &HeaderMap, tokens: &[[u8; 32]]) -> Result<(), ApiError> {
    matching_token(headers, tokens).map(|_| ())
}

/// Which of `tokens` the request's bearer token is (`None` when no token is configured).
fn matching_token(headers: &HeaderMap, tokens: &[[u8; 32]]) -> Result<Option<usize>, ApiError> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let unauthorized = |m: &str| api_error(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Check every configured token, so the time taken does not tell which one was close.
    let matched = tokens.iter().enumerate().fold(None, |found, (i, t)| {
        if digest_eq(t, &digest) {
            Some(i)
        } else {
            found
        }
    });
    matched
        .map(Some)
        .ok_or_else(|| unauthorized("the bearer token is not accepted"))
}

enum BodyKind {
    Json,
    Ndjson,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let unsupported = |got: &str| {
        api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {got} is not accepted; send application/json (an object or an array of objects) or application/x-ndjson"),
        )
    };
    let value = headers
        .get(header::CONTENT_TYPE)
        .ok_or_else(|| unsupported("(none)"))?
        .to_str()
        .map_err(|_| unsupported("(not text)"))?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/x-ndjson" => Ok(BodyKind::Ndjson),
        _ => Err(unsupported(&format!("`{value}`"))),
    }
}

async fn post_events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match ingest(&shared, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            shared.metrics.rejected(e.code);
            tracing::info!(
                status = e.status.as_u16(),
                reason = e.code,
                "ingest request rejected"
            );
            e.into_response()
        }
    }
}

async fn ingest(
    shared: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(headers, &shared.tokens)?;
    if !shared.ingestor.enabled() {
        return Err(IngestError::Disabled.into());
    }
    let kind = body_kind(headers)?;
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_body"
        };
        api_error(
            status,
            code,
            format!("cannot read the request body: {}", rejection.body_text()),
        )
    })?;
    let parsed = match kind {
        BodyKind::Json => shared.ingestor.parse_json(&body)?,
        BodyKind::Ndjson => shared.ingestor.parse_ndjson(&body)?,
    };
    let encoded = parsed
        .events
        .iter()
        .map(EncodedEvent::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(IngestError::from)?;
    let appended = shared.recorder.commit(encoded).await?;
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    shared
        .metrics
        .ingested((appended.len() - duplicates) as u64, duplicates as u64);
    shared.metrics.flagged(parsed.flagged.len() as u64);
    for f in &parsed.flagged {
        // The field and the rule only: no value of the event reaches the log.
        tracing::warn!(at = %f.at, error = %f.error, "stored an event that breaks the schema's rules (permissive validation)");
    }
    let ids: Vec<&str> = appended.iter().map(|a| a.id.as_str()).collect();
    let flagged: Vec<serde_json::Value> = parsed
        .flagged
        .iter()
        .map(
            |f| json!({"at": f.at.to_string(), "field": f.error.field, "problem": f.error.problem}),
        )
        .collect();
    Ok(Json(json!({
        "stored": appended.len() - duplicates,
        "duplicates": duplicates,
        "ids": ids,
        "flagged": flagged,
    }))
    .into_response())
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.check_writable().await {
        Ok(()) => Json(json!({"status": "ok", "store": "writable"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "store": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let result: Result<String, auditsync_store::StoreError> = async {
        let stats = shared.store.stats().await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut backlogs = Vec::new();
        for d in shared.exporter.destinations() {
            let cursor = shared.store.cursor(&d.name).await?;
            let oldest = shared.store.read_after(cursor, u64::MAX, 1).await?;
            backlogs.push(Backlog {
                destination: d.name.clone(),
                events: shared.store.count_after(cursor).await?,
                oldest_age_secs: oldest
                    .first()
                    .map_or(0.0, |e| (now_ms - e.event.time).max(0) as f64 / 1000.0),
            });
        }
        Ok(shared.metrics.render(stats.events, &backlogs))
    }
    .await;
    match result {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            e.to_string(),
        )
        .into_response(),
    }
}

/// The name of the admin token presented.
fn authorize_admin(headers: &HeaderMap, admins: &[(String, [u8; 32])]) -> Result<String, ApiError> {
    if admins.is_empty() {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "no admin tokens are configured (`admin.tokens`): the export API is off",
        ));
    }
    let digests: Vec<[u8; 32]> = admins.iter().map(|(_, d)| *d).collect();
    // `admins` is not empty, so a match is a name.
    let index = matching_token(headers, &digests)?.unwrap_or_default();
    Ok(admins[index].0.clone())
}

fn job_json(
    job: &crate::exports::Job,
    progress: Option<&auditsync_engine::range::RangeProgress>,
) -> serde_json::Value {
    use std::sync::atomic::Ordering;
    let mut value = serde_json::to_value(job).unwrap_or_default();
    if let Some(p) = progress {
        value["progress"] = json!({
            "scanned": p.scanned.load(Ordering::Relaxed),
            "archive_files_read": p.files.load(Ordering::Relaxed),
            "archive_files": p.files_total.load(Ordering::Relaxed),
            "written": p.written.load(Ordering::Relaxed),
        });
    }
    if job.status == JobStatus::Done {
        value["download"] = json!(format!("/v1/exports/{}/download", job.id));
    }
    value
}

async fn create_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    let body = body.map_err(|r| api_error(r.status(), "bad_body", r.body_text()))?;
    let params: RangeArgs =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
            .map_err(|e| {
                api_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    format!("field `{}`: {}", e.path(), e.inner()),
                )
            })?;
    // Over HTTP an archive must be a configured destination: a URL would let a token holder
    // point the service at any bucket or directory it can reach.
    if params
        .source
        .as_deref()
        .is_some_and(auditsync_engine::sink_url::is_url)
    {
        return Err(api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "field `source`: over HTTP, name a configured destination; sink URLs are for the CLI",
        ));
    }
    let job = shared
        .jobs
        .create(&shared.app, params, &admin)
        .map_err(|e| {
            api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{e:#}"),
            )
        })?;
    tracing::info!(job = %job.id, admin = %admin, "export job queued");
    shared.jobs.prune(shared.app.config.admin.keep_exports());
    tokio::spawn(shared.jobs.clone().run(shared.app.clone(), job.id.clone()));
    Ok((StatusCode::ACCEPTED, Json(job_json(&job, None))).into_response())
}

async fn list_exports(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&headers, &shared.admins)?;
    let jobs: Vec<serde_json::Value> = shared
        .jobs
        .list()
        .iter()
        .map(|job| job_json(job, shared.jobs.progress(&job.id).as_deref()))
        .collect();
    Ok(Json(json!({"exports": jobs})).into_response())
}

/// The job `id` and its progress while it runs; 404 when there is none.
fn find_job(
    shared: &Shared,
    id: &str,
) -> Result<
    (
        crate::exports::Job,
        Option<Arc<auditsync_engine::range::RangeProgress>>,
    ),
    ApiError,
> {
    shared.jobs.get(id).ok_or_else(|| {
        api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no export job `{id}`"),
        )
    })
}

async fn get_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize_admin(&headers, &shared.admins)?;
    let (job, progress) = find_job(&shared, &id)?;
    Ok(Json(job_json(&job, progress.as_deref())).into_response())
}

async fn download_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    let (job, _) = find_job(&shared, &id)?;
    if job.status != JobStatus::Done {
        return Err(api_error(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "export job `{id}` is {:?}; download it once it is done",
                job.status
            )
            .to_lowercase(),
        ));
    }
    let path = shared.jobs.file(&job);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        api_error(
            StatusCode::GONE,
            "gone",
            format!("the file of export job `{id}` is gone: {e}"),
        )
    })?;
    let length = file.metadata().await.map(|m| m.len()).unwrap_or_default();
    // The download is itself an audit event, durable before the first byte is sent.
    let mut event = own_event("audit_log.export.downloaded", admin);
    event.entity = Some(auditsync_core::Entity {
        kind: "audit_log_export".into(),
        id: Some(job.id.clone()),
    });
    event.params = params_of(&job.params);
    shared.recorder.record(event).await?;
    let content_type = if job.extension.starts_with("csv") {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"audit-export-{}.{}\"",
                    job.id, job.extension
                ),
            ),
        ],
        body,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    api_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; try POST /v1/events, POST /v1/exports, GET /healthz or GET /metrics",
    )
}

async fn method_not_allowed() -> ApiError {
    api_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed; POST /v1/events takes events, GET /healthz and GET /metrics report",
    )
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
        .route("/healthz", get(healthz).fallback(method_not_allowed))
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

async fn shutdown_signal(tx: watch::Sender<bool>) {
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
    let _ = tx.send(true);
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

/// Serves until SIGTERM/SIGINT: stops accepting, answers requests in flight, finishes an
/// export in progress, then returns.
pub async fn serve(app: App) -> anyhow::Result<()> {
    let addr = app.config.ingest.listen_addr()?;
    let tokens = app.config.ingest.token_digests()?;
    check_exposure(addr, &tokens)?;
    let export_schedule = Schedule::parse(&app.config.uevents_schedule)?;
    let gc_schedule = Schedule::parse(&app.config.uevents_gc_schedule)?;
    if !app.config.enable_user_events {
        tracing::warn!("enableUserEvents is false: ingest answers 403 and records nothing; stored events are still exported");
    }
    if tokens.is_empty() {
        tracing::warn!(%addr, "no ingest.token_hashes: ingest is unauthenticated (loopback only)");
    }
    let admins = app.config.admin.token_digests()?;
    let (jobs, resume) = Jobs::open(app.config.admin.exports_dir(&app.config.store))?;
    let jobs = Arc::new(jobs);
    jobs.prune(app.config.admin.keep_exports());
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn Store> = app.store.clone();
    let recorder = Recorder::start_with(store, app.redactor.clone());
    record_config_change(&app, &recorder).await?;
    let app = Arc::new(app);
    for id in resume {
        tracing::info!(job = %id, "export job resumed after a restart");
        tokio::spawn(jobs.clone().run(app.clone(), id));
    }
    let shared = Arc::new(Shared {
        app: app.clone(),
        jobs,
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
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("config key `ingest.listen`: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // Tests and supervisors read this line to learn the port (e.g. with `listen` port 0).
    println!("listening on http://{local}");
    tracing::info!(%local, "ingest listening");

    let (tx, rx) = watch::channel(false);
    tokio::spawn(shutdown_signal(tx));
    let scheduler = tokio::spawn(run_schedules(
        app.exporter.clone(),
        app.store.clone(),
        app.config.disable_uevents_gc,
        export_schedule,
        gc_schedule,
        metrics.clone(),
        rx.clone(),
    ));
    let mut sync_tasks = Vec::new();
    for sync in &app.config.syncs {
        let source = crate::endpoints::open(
            &sync.from,
            Some(&app.config),
            app.exporter.destinations(),
            &format!("syncs `{}` from", sync.name),
        )?;
        let target = crate::endpoints::open(
            &sync.to,
            Some(&app.config),
            app.exporter.destinations(),
            &format!("syncs `{}` to", sync.name),
        )?;
        let schedule = Schedule::parse(&sync.schedule)?;
        metrics.sync_registered(&sync.name);
        sync_tasks.push(tokio::spawn(run_sync(
            sync.clone(),
            source.sink,
            target.sink,
            schedule,
            metrics.clone(),
            rx.clone(),
        )));
    }
    let mut server_rx = rx;
    axum::serve(listener, router(shared, app.config.ingest.max_body_bytes))
        .with_graceful_shutdown(async move {
            let _ = server_rx.wait_for(|stop| *stop).await;
        })
        .await
        .context("HTTP server failed")?;
    scheduler.await.context("scheduler task failed")?;
    for task in sync_tasks {
        task.await.context("sync task failed")?;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Sleeps until `next`; false when the service is stopping first (or `next` never comes,
/// in which case it waits for the stop).
async fn wait_until(
    next: Option<chrono::DateTime<chrono::Utc>>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let Some(next) = next else {
        let _ = stop.wait_for(|s| *s).await;
        return false;
    };
    let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Runs one configured sync on its schedule until shutdown; a run in progress finishes.
/// Objects verified equal are remembered, so later runs compare sizes only for them.
async fn run_sync(
    config: crate::config::SyncConfig,
    source: Arc<dyn auditsync_core::Sink>,
    target: Arc<dyn auditsync_core::Sink>,
    schedule: Schedule,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    use auditsync_engine::sync::{sync, SyncOptions, VerifiedCache};
    let options = SyncOptions {
        prefix: config.prefix.clone(),
        dry_run: false,
        concurrency: config.concurrency,
    };
    let cache = Arc::new(VerifiedCache::default());
    loop {
        if !wait_until(schedule.next_after(chrono::Utc::now()), &mut stop).await {
            return;
        }
        let result = sync(
            source.clone(),
            target.clone(),
            &options,
            Arc::default(),
            cache.clone(),
        )
        .await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        match &result {
            Ok(report) => {
                metrics.synced(&config.name, Some(report), now_ms);
                for c in &report.conflicts {
                    tracing::warn!(sync = %config.name, key = %c.key, "conflict: the key differs between source and target; left alone");
                }
                for e in &report.errors {
                    tracing::warn!(sync = %config.name, error = %e, "sync copy failed");
                }
                if report.copied > 0 || !report.is_clean() {
                    tracing::info!(sync = %config.name, copied = report.copied, bytes = report.copied_bytes, conflicts = report.conflicts.len(), errors = report.errors.len(), "sync run done");
                }
            }
            Err(e) => {
                metrics.synced(&config.name, None, now_ms);
                tracing::warn!(sync = %config.name, error = %e, "sync run failed");
            }
        }
    }
}

async fn run_schedules(
    exporter: Arc<Exporter>,
    store: Arc<SqliteStore>,
    gc_disabled: bool,
    export_schedule: Schedule,
    gc_schedule: Schedule,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let now = chrono::Utc::now();
    let mut next_export = export_schedule.next_after(now);
    let mut next_gc = gc_schedule.next_after(now);
    tracing::info!(?next_export, ?next_gc, "schedules started");
    loop {
        let next = [next_export, next_gc].into_iter().flatten().min();
        if next.is_none() {
            tracing::warn!("neither schedule will fire again");
        }
        if !wait_until(next, &mut stop).await {
            return;
        }
        // Not raced against `stop`: an export or GC that started runs to its end.
        let now = chrono::Utc::now();
        if next_export.is_some_and(|t| t <= now) {
            for report in exporter.export_once().await {
                metrics.exported(&report, chrono::Utc::now().timestamp_millis());
                if report.files > 0 || report.error.is_some() {
                    tracing::info!(
                        destination = %report.destination,
                        files = report.files,
                        events = report.events,
                        bytes = report.bytes,
                        failing = report.error.is_some(),
                        "export run done"
                    );
                }
            }
            next_export = export_schedule.next_after(chrono::Utc::now());
        }
        if next_gc.is_some_and(|t| t <= now) {
            let names = exporter.destination_names();
            match gc_once(store.as_ref(), &names, gc_disabled).await {
                Ok(GcOutcome::Deleted(n)) => metrics.gc_deleted(n),
                Ok(GcOutcome::Disabled) => {}
                Err(e) => tracing::error!(error = %e, "garbage collection failed"),
            }
            next_gc = gc_schedule.next_after(chrono::Utc::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked_against_their_hashes() {
        let token = "ast_secret";
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let tokens = [[0u8; 32], digest];
        let mut headers = HeaderMap::new();
        assert_eq!(
            authorize(&headers, &tokens).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        headers.insert(header::AUTHORIZATION, "Bearer ast_secret".parse().unwrap());
        assert!(authorize(&headers, &tokens).is_ok());
        headers.insert(header::AUTHORIZATION, "Bearer ast_secreT".parse().unwrap());
        assert!(authorize(&headers, &tokens).is_err());
        headers.insert(header::AUTHORIZATION, "Basic ast_secret".parse().unwrap());
        assert!(authorize(&headers, &tokens).is_err());
        assert!(
            authorize(&HeaderMap::new(), &[]).is_ok(),
            "no tokens configured"
        );
    }

    #[test]
    fn unauthenticated_service_only_on_loopback() {
        assert!(check_exposure("127.0.0.1:1".parse().unwrap(), &[]).is_ok());
        assert!(check_exposure("[::1]:1".parse().unwrap(), &[]).is_ok());
        let err = check_exposure("0.0.0.0:1".parse().unwrap(), &[]).unwrap_err();
        assert!(err.to_string().contains("`ingest.listen`"), "{err}");
        assert!(check_exposure("0.0.0.0:1".parse().unwrap(), &[[1; 32]]).is_ok());
    }
}
