//! What a destination is doing, for the admin API and the status page: its state (from the
//! exporter's [`HealthBook`](auditsync_engine::health::HealthBook), which takes in the
//! failures other processes record in the store at each export tick), its last good export,
//! its backlog and the age of the oldest event it lacks.

use auditsync_engine::health::{rfc3339, DestinationState};
use auditsync_engine::{Destination, Exporter};
use auditsync_store::{Store, StoreError};
use serde::Serialize;

/// One destination's status.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationStatus {
    /// Its name in the tenant's file (or in `destinations`).
    pub name: String,
    /// Its tenant, for a tenant destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `active`, `failing` or `paused`.
    pub state: &'static str,
    /// While paused: the most events GC keeps for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_max_backlog: Option<u64>,
    /// When it started failing (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// Why its last run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it is tried again (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// When its last good run finished (RFC 3339), in this process.
    pub last_export: Option<String>,
    /// Events it has not exported yet.
    pub backlog_events: u64,
    /// Age of the oldest of them, in seconds (0 if none).
    pub oldest_age_secs: f64,
    /// Where it writes (without secrets).
    pub sink: String,
}

/// The name a destination has in its config: a tenant destination's store name without
/// `@<tenant>`.
pub fn config_name(dest: &Destination) -> String {
    match &dest.tenant {
        Some(tenant) => dest
            .name
            .strip_suffix(&format!("@{tenant}"))
            .unwrap_or(&dest.name)
            .to_string(),
        None => dest.name.clone(),
    }
}

/// The destination's status now.
pub async fn status_of(
    exporter: &Exporter,
    store: &dyn Store,
    dest: &Destination,
) -> Result<DestinationStatus, StoreError> {
    let backlog = store.backlog_of(&dest.name, dest.tenant.as_deref()).await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let health = exporter.health().get(&dest.name);
    let mut status = DestinationStatus {
        name: config_name(dest),
        tenant: dest.tenant.clone(),
        state: "active",
        paused_max_backlog: dest.pause.map(|p| p.max_backlog),
        failing_since: None,
        last_error: None,
        next_attempt: None,
        last_export: health.last_export_ms.map(rfc3339),
        backlog_events: backlog.events,
        oldest_age_secs: backlog
            .oldest_ms
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0),
        sink: dest.sink.describe(),
    };
    if let DestinationState::Failing(f) = health.state {
        status.state = "failing";
        status.failing_since = Some(rfc3339(f.since_ms));
        status.last_error = Some(f.last_error);
        status.next_attempt = Some(rfc3339(f.next_attempt_ms));
    }
    if dest.pause.is_some() {
        status.state = "paused";
    }
    Ok(status)
}
