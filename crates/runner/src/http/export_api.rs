//! `/v1/exports`: range exports as jobs, behind admin tokens.

use super::*;

pub(super) fn job_json(
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

pub(super) async fn create_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    let body = body.map_err(|r| api_error(r.status(), "bad_body", r.body_text()))?;
    let mut params: RangeArgs =
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
    if params.scope_tenant.is_some() {
        return Err(api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "field `scope_tenant`: set by the service from a tenant-scoped token, not by a request",
        ));
    }
    if let (Some(own), Some(filter)) = (&admin.tenant, &params.filter) {
        // Asking for another tenant's events is a matter of permission, not of form.
        let organizations = filter
            .split(',')
            .filter_map(|term| term.split_once('='))
            .filter(|(key, _)| key.trim() == "organization")
            .map(|(_, value)| value.trim());
        for other in organizations.filter(|o| o != own) {
            admin.may_see(Some(other))?;
        }
    }
    params.scope_tenant = admin.tenant.clone();
    let job = shared
        .jobs
        .create(&shared.app, params, &admin.name)
        .map_err(|e| {
            api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{e:#}"),
            )
        })?;
    tracing::info!(job = %job.id, admin = %admin.name, "export job queued");
    shared.jobs.prune(shared.app.config.admin.keep_exports());
    tokio::spawn(shared.jobs.clone().run(shared.app.clone(), job.id.clone()));
    Ok((StatusCode::ACCEPTED, Json(job_json(&job, None))).into_response())
}

pub(super) async fn list_exports(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    let jobs: Vec<serde_json::Value> = shared
        .jobs
        .list()
        .iter()
        // A scoped token sees its tenant's jobs only.
        .filter(|job| admin.may_see(job.params.scope_tenant.as_deref()).is_ok())
        .map(|job| job_json(job, shared.jobs.progress(&job.id).as_deref()))
        .collect();
    Ok(Json(json!({"exports": jobs})).into_response())
}

/// The job `id` and its progress while it runs; 404 when there is none.
pub(super) fn find_job(
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

pub(super) async fn get_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    let (job, progress) = find_job(&shared, &id)?;
    admin.may_see(job.params.scope_tenant.as_deref())?;
    Ok(Json(job_json(&job, progress.as_deref())).into_response())
}

pub(super) async fn download_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    let (job, _) = find_job(&shared, &id)?;
    admin.may_see(job.params.scope_tenant.as_deref())?;
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
    let mut event = own_event("audit_log.export.downloaded", admin.name);
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

pub(super) async fn not_found() -> ApiError {
    api_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; try POST /v1/events, POST /v1/exports, GET /healthz or GET /metrics",
    )
}

pub(super) async fn method_not_allowed() -> ApiError {
    api_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed; POST /v1/events takes events, GET /healthz and GET /metrics report",
    )
}
