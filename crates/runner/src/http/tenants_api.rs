//! `/v1/tenants/{tenant}/destinations`: a tenant's destinations and their state, behind an
//! admin token (a tenant-scoped one sees its own tenant only).

use super::*;
use crate::tenant_status::status_of;

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
        let status = status_of(&shared.exporter, shared.store.as_ref(), dest)
            .await
            .map_err(|e| {
                api_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_error",
                    e.to_string(),
                )
            })?;
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
