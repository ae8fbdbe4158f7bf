//! Garbage collection of exported events.

use auditsync_store::{Store, StoreError};

/// What a GC run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcOutcome {
    /// GC is disabled (`disableUeventsGC`); nothing was deleted.
    Disabled,
    /// This many events, held by every destination, were deleted.
    Deleted(u64),
}

/// Deletes the events every one of `destinations` has exported, unless `disabled`.
pub async fn gc_once(
    store: &dyn Store,
    destinations: &[String],
    disabled: bool,
) -> Result<GcOutcome, StoreError> {
    if disabled {
        tracing::info!("garbage collection is disabled (disableUeventsGC); nothing deleted");
        return Ok(GcOutcome::Disabled);
    }
    let deleted = store.gc(destinations).await?;
    tracing::info!(deleted, "garbage collection done");
    Ok(GcOutcome::Deleted(deleted))
}
