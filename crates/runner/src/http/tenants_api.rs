//! `/v1/tenants/{tenant}/destinations`: a tenant's destinations and their state, behind an
//! admin token (a tenant-scoped one sees its own tenant only).

use super::*;
use crate::tenant_status::{status_of, DestinationStatus};

/// The destination's status, or 503 when the store cannot say.
async fn status(
    shared: &Shared,
    dest: &auditsync_engine::Destination,
) -> Result<DestinationStatus, ApiError> {
    status_of(&shared.exporter, shared.store.as_ref(), dest)
        .await
        .map_err(|e| {
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_error",
                e.to_string(),
            )
        })
}

pub(super) async fn tenant_destinations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    admin.may_see(Some(&tenant))?;
    let mut destinations = Vec::new();
    for dest in shared
        .exporter
        .destinations()
        .iter()
        .filter(|d| d.tenant.as_deref() == Some(tenant.as_str()))
    {
        let status = status(&shared, dest).await?;
        destinations.push(status);
    }
    if destinations.is_empty() {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("tenant {tenant:?} has no destinations"),
        ));
    }
    Ok(Json(json!({"tenant": tenant, "destinations": destinations})).into_response())
}

/// 404 for a destination the tenant does not have.
fn no_destination(tenant: &str, name: &str) -> ApiError {
    api_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("tenant {tenant:?} has no destination `{name}`"),
    )
}

fn invalid(message: impl Into<String>) -> ApiError {
    api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

/// The tenants directory, or 409 when the service has none.
fn tenants_dir(shared: &Shared) -> Result<std::path::PathBuf, ApiError> {
    shared.app.config.tenants_dir.clone().ok_or_else(|| {
        api_error(
            StatusCode::CONFLICT,
            "no_tenants_dir",
            "the service has no `tenants_dir`: tenant destinations cannot be configured",
        )
    })
}

/// A destination's config as a GET shows it: every secret key masked as `***`, a reference
/// as well as a value.
fn shown(config: &crate::config::DestinationConfig) -> serde_json::Value {
    let mut value = serde_json::to_value(config).unwrap_or_default();
    crate::config::mask_secrets(&mut value);
    value
}

/// `GET /v1/tenants/{tenant}/destinations/{name}`: its config and status.
pub(super) async fn get_tenant_destination(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    admin.may_see(Some(&tenant))?;
    let tenants = shared.app.tenants();
    let config = tenants
        .iter()
        .find(|t| t.tenant == tenant)
        .and_then(|t| t.destinations.iter().find(|d| d.name == name))
        .ok_or_else(|| no_destination(&tenant, &name))?;
    let store_name = crate::config::tenant_destination_name(&tenant, &name);
    let destinations = shared.exporter.destinations();
    let status = match destinations.iter().find(|d| d.name == store_name) {
        Some(dest) => Some(status(&shared, dest).await?),
        None => None,
    };
    Ok(Json(json!({"tenant": tenant, "config": shown(config), "status": status})).into_response())
}

/// `PUT /v1/tenants/{tenant}/destinations/{name}`: checks the destination, verifies its
/// sink (a `verify-test-<millis>` object written, read back and deleted), then writes it into
/// the tenant's file and reloads. Refused with the reason if any step fails; then nothing
/// is written.
pub(super) async fn put_tenant_destination(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    admin.may_see(Some(&tenant))?;
    let dir = tenants_dir(&shared)?;
    crate::config::tenants::check_tenant(&tenant).map_err(|e| invalid(format!("{e:#}")))?;
    let body = body.map_err(|r| api_error(r.status(), "bad_body", r.body_text()))?;
    let mut value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("not JSON: {e}"),
        )
    })?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid("the body must be a destination: a JSON object"))?;
    match object.get("name") {
        Some(given) if given != &json!(name) => {
            return Err(invalid(format!(
                "field `name`: {given} differs from `{name}` in the path"
            )))
        }
        _ => {
            object.insert("name".into(), json!(name));
        }
    }
    let config: crate::config::DestinationConfig = serde_path_to_error::deserialize(value)
        .map_err(|e| invalid(format!("field `{}`: {}", e.path(), e.inner())))?;
    crate::config::tenants::check_destination(&config, &shared.app.schemas)
        .map_err(|e| invalid(format!("{e:#}")))?;
    crate::config::secret_ref::refuse_literal_secrets(&config.options)
        .map_err(|e| invalid(e.to_string()))?;
    let built = crate::app::build_destination(
        &config,
        Some(&tenant),
        shared.app.config.retry.policy(),
        &shared.app.schemas,
    )
    .map_err(|e| invalid(e.to_string()))?;
    built.sink.verify("").await.map_err(|e| {
        api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "verify_failed",
            format!(
                "the destination was not saved: verify ({}) failed: {e}",
                built.sink.describe()
            ),
        )
    })?;

    let _one = shared.tenant_edits.lock().await;
    let tenants = shared.app.tenants();
    let existing = tenants.iter().find(|t| t.tenant == tenant);
    let mut file = existing
        .cloned()
        .unwrap_or_else(|| crate::config::TenantFile {
            tenant: tenant.clone(),
            destinations: Vec::new(),
            path: crate::config::tenants::new_tenant_file(&dir, &tenant),
        });
    let created = match file.destinations.iter_mut().find(|d| d.name == name) {
        Some(slot) => {
            *slot = config.clone();
            false
        }
        None => {
            file.destinations.push(config.clone());
            true
        }
    };
    rewrite(&shared, &file).await?;
    // Verified just now: the old config's failures hold the new one back no longer.
    shared
        .exporter
        .forget_failure(&crate::config::tenant_destination_name(&tenant, &name))
        .await;
    let change = if created { "created" } else { "updated" };
    record_change(&shared, &admin, &tenant, &name, change).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(
            json!({"tenant": tenant, "config": shown(&config), "verified": true, "change": change}),
        ),
    )
        .into_response())
}

/// `DELETE /v1/tenants/{tenant}/destinations/{name}`: removes it from the tenant's file (and
/// the file once it has none) and reloads. Its cursor and batches stay in the store.
pub(super) async fn delete_tenant_destination(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    admin.may_see(Some(&tenant))?;
    tenants_dir(&shared)?;
    let _one = shared.tenant_edits.lock().await;
    let tenants = shared.app.tenants();
    let mut file = tenants
        .iter()
        .find(|t| t.tenant == tenant && t.destinations.iter().any(|d| d.name == name))
        .cloned()
        .ok_or_else(|| no_destination(&tenant, &name))?;
    file.destinations.retain(|d| d.name != name);
    rewrite(&shared, &file).await?;
    shared
        .exporter
        .forget_failure(&crate::config::tenant_destination_name(&tenant, &name))
        .await;
    record_change(&shared, &admin, &tenant, &name, "deleted").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Writes the tenant's file (removes it when it has no destination left) and reloads; on a
/// failed reload the previous file is put back.
async fn rewrite(shared: &Shared, file: &crate::config::TenantFile) -> Result<(), ApiError> {
    let failed = |e: anyhow::Error| {
        api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "write_failed",
            format!("tenant file {}: {e:#}", file.path.display()),
        )
    };
    let previous = std::fs::read(&file.path).ok();
    let written = if file.destinations.is_empty() {
        std::fs::remove_file(&file.path).map_err(anyhow::Error::from)
    } else {
        crate::config::tenants::write_tenant_file(&file.path, file)
    };
    written.map_err(failed)?;
    let app = shared.app.clone();
    let reloaded = tokio::task::spawn_blocking(move || app.reload_tenants())
        .await
        .map_err(|e| failed(anyhow::anyhow!("reload task: {e}")))?;
    if let Err(e) = reloaded {
        // Put back as it is written: whole or not at all.
        let restored = match previous {
            Some(bytes) => crate::config::tenants::write_file_atomically(&file.path, &bytes),
            None => std::fs::remove_file(&file.path).map_err(anyhow::Error::from),
        };
        if let Err(e) = restored {
            tracing::error!(file = %file.path.display(), error = %e, "cannot put the previous tenant file back");
        }
        return Err(invalid(format!(
            "the tenant files do not load with this change: {e:#}"
        )));
    }
    Ok(())
}

/// Records the change as `auditsync.config.changed`, done by the admin token.
async fn record_change(
    shared: &Shared,
    admin: &Admin,
    tenant: &str,
    name: &str,
    change: &str,
) -> Result<(), ApiError> {
    let mut event = crate::own_events::own_event("auditsync.config.changed", admin.name.clone());
    event.params.insert("tenant".into(), json!(tenant));
    event.params.insert("destination".into(), json!(name));
    event.params.insert("change".into(), json!(change));
    shared.recorder.record(event).await?;
    Ok(())
}

/// `GET /v1/tenants`: every tenant's destinations and their status (a tenant-scoped token:
/// its own tenant's only), in tenant order.
pub(super) async fn list_tenants(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    let mut by_tenant: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for dest in shared.exporter.destinations().iter() {
        let Some(tenant) = &dest.tenant else { continue };
        if admin.may_see(Some(tenant)).is_err() {
            continue;
        }
        let status = status(&shared, dest).await?;
        by_tenant.entry(tenant.clone()).or_default().push(status);
    }
    let tenants: Vec<serde_json::Value> = by_tenant
        .into_iter()
        .map(|(tenant, destinations)| json!({"tenant": tenant, "destinations": destinations}))
        .collect();
    Ok(Json(json!({"scope": admin.tenant, "tenants": tenants})).into_response())
}

/// `POST /v1/tenants/{tenant}/destinations/{name}/verify`: writes, reads back and deletes a
/// `verify-test-<millis>` object through the destination's sink as the service uses it.
/// Answers 200 with `ok` and, when it failed, `error`.
pub(super) async fn verify_tenant_destination(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    admin.may_see(Some(&tenant))?;
    let store_name = crate::config::tenant_destination_name(&tenant, &name);
    let destinations = shared.exporter.destinations();
    let dest = destinations
        .iter()
        .find(|d| d.name == store_name)
        .ok_or_else(|| no_destination(&tenant, &name))?;
    let answer = match dest.sink.verify("").await {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    tracing::info!(tenant, destination = %name, admin = %admin.name, ok = %answer["ok"], "verify from the admin API");
    Ok(Json(answer).into_response())
}

/// `GET /v1/config`: the effective configuration with every secret masked, and the tenant
/// files as loaded. For an admin token of every tenant only (it names them all).
pub(super) async fn get_config(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&headers, &shared.admins)?;
    admin.may_see(None)?;
    let mut tenants = serde_json::to_value(&*shared.app.tenants()).unwrap_or_default();
    crate::config::mask_secrets(&mut tenants);
    Ok(Json(json!({"config": shared.app.config.masked(), "tenants": tenants})).into_response())
}
