//! `POST /v1/events`, `/healthz` and `/metrics`.

use super::*;

pub(super) enum BodyKind {
    Json,
    Ndjson,
}

pub(super) fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
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

pub(super) async fn post_events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
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

pub(super) async fn ingest(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Refusals decided from the headers still read what the client sends (bounded), so
    // that it receives the answer rather than a reset connection.
    let checked = authorize(headers, &shared.tokens).and_then(|()| {
        if shared.ingestor.enabled() {
            body_kind(headers)
        } else {
            Err(IngestError::Disabled.into())
        }
    });
    let kind = match checked {
        Ok(kind) => kind,
        Err(mut e) => {
            e.close = !drain(body).await;
            return Err(e);
        }
    };
    let expected = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = read_limited(body, shared.max_body, expected)
        .await
        .map_err(|e| match e {
        BodyError::TooLarge { max, drained } => ApiError {
            close: !drained,
            ..api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("cannot read the request body: the body is over the limit of {max} bytes (`ingest.max_body_bytes`)"),
            )
        },
        BodyError::Read(message) => api_error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("cannot read the request body: {message}"),
        ),
    })?;
    let parsed = match kind {
        BodyKind::Json => shared.ingestor.parse_json(&body)?,
        BodyKind::Ndjson => shared.ingestor.parse_ndjson(&body)?,
    };
    // Held, not refused, while the store checks itself at open: nothing is lost, and a
    // client that gives up first may send the same ids again. A stop before the verdict
    // ends the wait (the sender is dropped) and refuses, so that shutdown is not held up.
    if shared
        .started
        .clone()
        .wait_for(|started| *started)
        .await
        .is_err()
    {
        return Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service stopped before its store finished checking itself at open; nothing was stored, send again",
        ));
    }
    let appended = shared.recorder.commit(parsed.events).await?;
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

/// 200 while the service answers at all: for liveness probes, which must not restart a
/// service that is still checking a large store at open.
pub(super) async fn livez() -> Response {
    Json(json!({"status": "live"})).into_response()
}

/// 200 while the store accepts writes; 503 while it starts or when it cannot (readiness).
pub(super) async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if !*shared.started.borrow() {
        let store = if shared.store.holds_writes() {
            "checking its integrity at open; writes wait for the verdict"
        } else {
            "opening"
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"status": "starting", "store": store, "corrupted": false})),
        )
            .into_response();
    }
    match shared.store.check_writable().await {
        Ok(()) => Json(json!({"status": "ok", "store": "writable"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unhealthy",
                "store": e.to_string(),
                "corrupted": shared.store.corruption().is_some(),
            })),
        )
            .into_response(),
    }
}

pub(super) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let corrupted = shared.store.corruption().is_some();
    let started = *shared.started.borrow();
    shared.metrics.starting(!started);
    if !started {
        // The store's figures would wait for its check at open; the service's own do not.
        let text = shared.metrics.render(None, &[], corrupted);
        return ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response();
    }
    let result: Result<String, auditsync_store::StoreError> = async {
        let stats = shared.store.stats().await?;
        let mut backlogs = Vec::new();
        let mut tenants = crate::metrics::TenantFigures::default();
        for d in shared.exporter.destinations().iter() {
            let status =
                crate::tenant_status::status_of(&shared.exporter, shared.store.as_ref(), d).await?;
            let backlog = Backlog {
                destination: d.name.clone(),
                events: status.backlog_events,
                oldest_age_secs: status.oldest_age_secs,
            };
            if d.tenant.is_none() {
                backlogs.push(backlog);
                continue;
            }
            tenants.destinations += 1;
            tenants.failing += u64::from(status.state == "failing");
            tenants.paused += u64::from(status.state == "paused");
            tenants.backlogs.push(backlog);
        }
        shared.metrics.tenants(&tenants);
        Ok(shared
            .metrics
            .render(Some(stats.events), &backlogs, corrupted))
    }
    .await;
    // A damaged store may fail the queries above; the counters and the damage still show.
    let result = match result {
        Err(_) if corrupted => Ok(shared.metrics.render(None, &[], true)),
        other => other,
    };
    match result {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            e.to_string(),
        )
        .into_response(),
    }
}
