//! Garbage collection of exported events.

use auditsync_store::{Store, StoreError, Takers};

/// What a GC run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcOutcome {
    /// GC is disabled (`disableUeventsGC`); nothing was deleted.
    Disabled,
    /// This many events, held by every destination, were deleted.
    Deleted(u64),
}

/// Deletes the events every destination that takes them has exported, unless `disabled`
/// (see [`Takers`]; [`crate::Exporter::takers`] gives them for its destinations).
pub async fn gc_once(
    store: &dyn Store,
    takers: &Takers,
    disabled: bool,
) -> Result<GcOutcome, StoreError> {
    if disabled {
        tracing::info!("garbage collection is disabled (disableUeventsGC); nothing deleted");
        return Ok(GcOutcome::Disabled);
    }
    let deleted = store.gc_takers(takers).await?;
    tracing::info!(deleted, "garbage collection done");
    Ok(GcOutcome::Deleted(deleted))
}
