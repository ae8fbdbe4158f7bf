//! Export: for each destination, the events after its cursor become files in its sink.
//!
//! Per file: encode the next events (up to the destination's limits), derive the key from
//! the file's earliest event time and sequence range, record the batch in the store, put it
//! (create-if-absent), and only then move the cursor. After a crash the recorded batch is
//! re-encoded from the same events to the same bytes and put under the same key, so a
//! retry never produces a second copy of an event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditsync_core::{KeyError, ObjectKey, PutOptions, PutOutcome, Sink, SinkError};
use auditsync_store::{
    holder, Batch, DestinationFailure, ExportClaim, ExportStart, LeaseOutcome, Store, StoreError,
    Takers,
};
use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike};
use sha2::{Digest, Sha256};

pub use crate::encode::FileLimits as BatchLimits;
use crate::encode::{encode_file, EncodeError, EncodedFile, FileFormat, SpareBodies};
use crate::health::{rfc3339, Backoff, HealthBook};
use crate::manifests::{write_due, ManifestReport, ManifestSettings};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Default events per file.
pub const DEFAULT_MAX_EVENTS: u64 = 100_000;
/// Default uncompressed bytes per file: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_events: DEFAULT_MAX_EVENTS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One configured destination.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its name: the key of its cursor in the store.
    pub name: String,
    /// Where files go, rooted at the destination's key prefix (a
    /// [`crate::prefix::PrefixedSink`]) and wrapped in the retry layer: the prefix is applied
    /// there once, and every key the exporter, `verify` or a sync uses is relative to it.
    pub sink: Arc<dyn Sink>,
    /// Schema, formatter and compression.
    pub format: FileFormat,
    /// Where a file stops.
    pub limits: BatchLimits,
    /// The tenant whose events alone it takes (a tenant destination), or `None` for every
    /// event.
    pub tenant: Option<String>,
    /// Set while the destination is paused: it exports nothing, and GC keeps its backlog up
    /// to the bound.
    pub pause: Option<Pause>,
}

/// A paused destination's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// GC keeps at most this many events for it; past them, GC goes on without it (it will
    /// lack what GC deletes) and says so.
    pub max_backlog: u64,
}

/// A paused destination is warned about once its backlog reaches this share of its bound.
pub const PAUSE_WARNING_SHARE: f64 = 0.8;

impl Destination {
    /// A batch key as the store recorded it (with or without the prefix older versions
    /// put in it), named as the backend names the object: for messages and `status`.
    pub fn backend_key_of_recorded(&self, recorded: &str) -> String {
        ObjectKey::new(relative_batch_key(recorded))
            .map_or_else(|_| recorded.to_string(), |k| self.sink.backend_key(&k))
    }
}

/// Why a destination's export stopped. Other destinations are not affected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Encoding a file failed.
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// The sink failed (after the retry layer gave up, or at once for permanent errors).
    #[error("{0}")]
    Sink(#[from] SinkError),
    /// A key could not be formed (bad prefix or namespace).
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The destination holds different bytes at a batch's key, or a pending batch no
    /// longer encodes as recorded. Nothing is overwritten; an operator must look.
    #[error("conflict at `{key}`: {message}")]
    Conflict {
        /// The key.
        key: String,
        /// What differs.
        message: String,
    },
}

/// What one destination's export did.
#[derive(Debug)]
pub struct DestinationReport {
    /// The destination.
    pub destination: String,
    /// Its tenant, for a tenant destination.
    pub tenant: Option<String>,
    /// Files written (or found already written, identical, after a crash).
    pub files: u64,
    /// Events in those files.
    pub events: u64,
    /// Bytes in those files.
    pub bytes: u64,
    /// Why the export stopped early, if it did.
    pub error: Option<ExportError>,
    /// Set when this run left the destination alone because another export of it (another
    /// process sharing the store) holds its lease: not a failure, the other one exports.
    pub skipped: Option<String>,
    /// Manifests written after the files (none when manifests are off).
    pub manifests: ManifestReport,
}

impl DestinationReport {
    /// Nothing done yet for `destination`.
    fn new(destination: &Destination) -> Self {
        Self {
            destination: destination.name.clone(),
            tenant: destination.tenant.clone(),
            files: 0,
            events: 0,
            bytes: 0,
            error: None,
            skipped: None,
            manifests: ManifestReport::default(),
        }
    }
}

/// Runs exports of all destinations from one store.
#[derive(Debug)]
pub struct Exporter {
    store: Arc<dyn Store>,
    namespace: String,
    /// Replaced whole when tenant files change ([`Exporter::replace_destinations`]); a run
    /// keeps the set it started with.
    destinations: std::sync::RwLock<Arc<[Destination]>>,
    /// How this exporter names itself to other processes (`pid 4711 on host-a #1`).
    holder: String,
    /// Signed manifests after each destination's files, when set.
    manifests: Option<ManifestSettings>,
    /// One manifest writer at a time in this process (an export and the heartbeat of
    /// [`Exporter::write_manifests`] would otherwise race for the next number).
    manifest_writer: tokio::sync::Mutex<()>,
    /// Each destination's state: a failing one waits out its pause.
    health: HealthBook,
    /// The destinations whose export runs now in this process. A run that outlasts its
    /// tick (a sink that hangs or retries) is not started again beside itself: the lease
    /// cannot tell, as this process holds it.
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether a failing destination waits out its pause (see [`Exporter::wait_out_pauses`]).
    waits_out_pauses: std::sync::atomic::AtomicBool,
}

/// How long a run of [`Exporter::export_following`] goes on past the head it began with.
#[derive(Debug, Clone)]
struct Follow {
    until: Instant,
    /// True once the schedules stop.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Follow {
    fn goes_on(&self) -> bool {
        Instant::now() < self.until && !*self.stop.borrow()
    }
}

/// A destination's place in [`Exporter::running`], given up when its run ends.
struct Running<'e> {
    exporter: &'e Exporter,
    destination: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.exporter
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.destination);
    }
}

/// Destinations exported at once. Each waits for the store and its sink more than it
/// computes, so more than the cores; a thousand tenants' at once would only crowd the
/// store's connection and the blocking threads.
pub const EXPORTS_AT_ONCE: usize = 16;

/// How long an export's lease on its destination lasts unless renewed; it is renewed
/// before a file once a tenth of it has passed, so a process killed mid-export holds it up
/// to this long.
pub const EXPORT_LEASE_MS: i64 = 10 * 60 * 1000;

/// How long a run of [`Exporter::export_following`] goes on taking the full files that fill
/// up while it runs. Past it the run ends at the head it last read, and leaves its slot to
/// the destinations waiting for one.
pub const FOLLOW_AT_MOST: Duration = Duration::from_secs(60);

/// A recorded batch's key relative to its destination's root. Batches recorded before the
/// prefix moved into the sink carry `<prefix>/` in front; a key has exactly seven segments
/// below the prefix (`<namespace>/audit/<yyyy>/<mm>/<dd>/<HH>/<seqs>.<ext>`, the namespace
/// being one segment), so those are the ones kept, whatever the prefix was.
pub fn relative_batch_key(recorded: &str) -> String {
    let segments: Vec<&str> = recorded.split('/').collect();
    segments[segments.len().saturating_sub(7)..].join("/")
}

/// `<prefix>/<namespace>/audit/<yyyy>/<mm>/<dd>/<HH>/<first_seq>-<last_seq>.<ext>`, the date
/// being the UTC time of the file's earliest event and the sequence numbers zero-padded to 20
/// digits, so keys sort in export order.
pub fn batch_key(
    prefix: &str,
    namespace: &str,
    earliest_time_ms: i64,
    first_seq: u64,
    last_seq: u64,
    extension: &str,
) -> Result<ObjectKey, KeyError> {
    let t = DateTime::from_timestamp_millis(earliest_time_ms).unwrap_or_default();
    ObjectKey::join(
        prefix,
        &format!(
            "{namespace}/audit/{:04}/{:02}/{:02}/{:02}/{first_seq:020}-{last_seq:020}.{extension}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        ),
    )
}

impl Exporter {
    /// An exporter for `destinations`, whose names must be unique.
    pub fn new(store: Arc<dyn Store>, namespace: String, destinations: Vec<Destination>) -> Self {
        Self {
            store,
            namespace,
            destinations: std::sync::RwLock::new(destinations.into()),
            holder: holder::this_process(),
            manifests: None,
            manifest_writer: tokio::sync::Mutex::new(()),
            health: HealthBook::default(),
            running: std::sync::Mutex::default(),
            waits_out_pauses: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Whether a failing destination waits out its pause before it is tried again (the
    /// default), also a pause another process sharing the store recorded. An operator's
    /// one-off export (`export --once`) tries every destination now.
    pub fn wait_out_pauses(&self, wait: bool) {
        self.waits_out_pauses
            .store(wait, std::sync::atomic::Ordering::Relaxed);
    }

    /// Marks `destination` as running in this process; `None` if a run of it already is.
    fn start_running(&self, destination: &str) -> Option<Running<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(destination.to_string()).then(|| Running {
            exporter: self,
            destination: destination.to_string(),
        })
    }

    /// Pauses failing destinations by `backoff` (default [`Backoff::default`]).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.health = HealthBook::new(backoff);
        self
    }

    /// Each destination's state, as this exporter's runs left it.
    pub fn health(&self) -> &HealthBook {
        &self.health
    }

    /// The manifest settings, when manifests are on.
    pub fn manifest_settings(&self) -> Option<&ManifestSettings> {
        self.manifests.as_ref()
    }

    /// Writes the manifests that are due for every destination (the files completed since
    /// the last one, or an empty one when the last is older than the interval), without
    /// exporting: the heartbeat of `auditsync run`, and `auditsync manifest backfill`. A
    /// destination whose export lease another process holds is left to it. `only` names one
    /// destination.
    pub async fn write_manifests(
        &self,
        only: Option<&str>,
    ) -> Vec<(String, Result<ManifestReport, ExportError>)> {
        let mut results = Vec::new();
        let Some(settings) = &self.manifests else {
            return results;
        };
        for dest in self
            .destinations()
            .iter()
            .filter(|d| only.is_none_or(|name| d.name == name))
        {
            let lease = format!("export:{}", dest.name);
            let mut report = DestinationReport::new(dest);
            let result = match self.hold_lease(&lease, &mut report).await {
                Ok(true) => {
                    let written = {
                        let _one = self.manifest_writer.lock().await;
                        write_due(self.store.as_ref(), &self.namespace, dest, settings).await
                    };
                    // An export of this process holding it too takes it again before its
                    // next file.
                    if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
                        tracing::warn!(destination = %dest.name, error = %e, "cannot release the export lease");
                    }
                    written
                }
                Ok(false) => Ok(ManifestReport::default()),
                Err(e) => Err(e),
            };
            results.push((dest.name.clone(), result));
        }
        results
    }

    /// Writes signed, chained manifests after each destination's files (see
    /// [`crate::manifests`]).
    pub fn with_manifests(mut self, settings: ManifestSettings) -> Self {
        self.manifests = Some(settings);
        self
    }

    /// The destinations now (a run keeps the set it started with).
    pub fn destinations(&self) -> Arc<[Destination]> {
        Arc::clone(&self.destinations.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the destinations (tenant files changed); runs in progress finish with the
    /// old set. Their names must be unique.
    pub fn replace_destinations(&self, destinations: Vec<Destination>) {
        *self.destinations.write().unwrap_or_else(|p| p.into_inner()) = destinations.into();
    }

    /// Names of the destinations.
    pub fn destination_names(&self) -> Vec<String> {
        self.destinations().iter().map(|d| d.name.clone()).collect()
    }

    /// Which destinations take which events, for GC: tenant destinations take their
    /// tenant's, the others every event. A paused destination whose backlog is past its
    /// bound is left out (GC goes on without it), with an error in the log; one nearing its
    /// bound gets a warning. If its backlog cannot be counted it stays in.
    pub async fn takers(&self) -> Takers {
        let mut takers = Takers::default();
        for dest in self.destinations().iter() {
            if let Some(pause) = dest.pause {
                if let Ok(backlog) = self.backlog(dest).await {
                    if backlog > pause.max_backlog {
                        tracing::error!(destination = %dest.name, backlog, bound = pause.max_backlog,
                            "paused destination is past its backlog bound: GC no longer keeps events for it, and it will lack those GC deletes");
                        continue;
                    }
                    if backlog as f64 >= pause.max_backlog as f64 * PAUSE_WARNING_SHARE {
                        tracing::warn!(destination = %dest.name, backlog, bound = pause.max_backlog,
                            "paused destination nears its backlog bound; past it, GC stops keeping events for it");
                    }
                }
            }
            match &dest.tenant {
                Some(tenant) => takers
                    .by_tenant
                    .entry(tenant.clone())
                    .or_default()
                    .push(dest.name.clone()),
                None => takers.all.push(dest.name.clone()),
            }
        }
        takers
    }

    /// Exports every destination concurrently up to the events stored now. A failing
    /// destination stops at its failure; the others go on.
    pub async fn export_once(self: &Arc<Self>) -> Vec<DestinationReport> {
        self.export_all(None).await
    }

    /// [`Exporter::export_once`], after which each destination that takes every tenant's
    /// events goes on while a full file of events stored since waits (at least
    /// [`BatchLimits::max_events`] of them), for at most [`FOLLOW_AT_MOST`], and until
    /// `stop` turns true, when each run ends at the head it last read. What a scheduled run
    /// does: a backlog of full files goes out now rather than one run per tick, and the
    /// files stay full instead of ending at each run's start. A tenant's destination is not
    /// followed: how far the store's head moved says nothing of how many of the new events
    /// are its tenant's.
    pub async fn export_following(
        self: &Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<DestinationReport> {
        self.export_all(Some(Follow {
            until: Instant::now() + FOLLOW_AT_MOST,
            stop,
        }))
        .await
    }

    /// Exports every destination up to the events stored now, following new full files
    /// as `follow` says when it is set.
    async fn export_all(self: &Arc<Self>, follow: Option<Follow>) -> Vec<DestinationReport> {
        let destinations = self.destinations();
        let up_to = match self.store.last_seq().await {
            Ok(last_seq) => last_seq,
            Err(e) => {
                return destinations
                    .iter()
                    .map(|d| DestinationReport {
                        error: Some(ExportError::Store(StoreError::Backend {
                            operation: "stats",
                            source: e.to_string().into(),
                            retryable: e.is_retryable(),
                        })),
                        ..DestinationReport::new(d)
                    })
                    .collect()
            }
        };
        self.adopt_shared_health(&destinations).await;
        let mut tasks = tokio::task::JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(EXPORTS_AT_ONCE));
        for index in 0..destinations.len() {
            let this = Arc::clone(self);
            let slots = Arc::clone(&slots);
            let destinations = Arc::clone(&destinations);
            let follow = follow.clone();
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let report = this
                    .export_up_to(&destinations[index], up_to, follow.as_ref())
                    .await;
                (index, report)
            });
        }
        let mut reports: Vec<Option<DestinationReport>> =
            (0..destinations.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, report)) => reports[index] = Some(report),
                Err(e) => tracing::error!(error = %e, "export task failed"),
            }
        }
        reports.into_iter().flatten().collect()
    }

    /// Takes in the destination failures the store keeps for every process sharing it, so
    /// that this one shows and waits out a failure another process ran into, and forgets
    /// one another process has seen end.
    async fn adopt_shared_health(&self, destinations: &[Destination]) {
        let records = match self.store.destination_failures().await {
            Ok(Some(records)) => records,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the destination failures the store records; going by this process's own");
                return;
            }
        };
        let names: Vec<String> = destinations.iter().map(|d| d.name.clone()).collect();
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.health.adopt(&records, &names, &running);
    }

    /// Records in the store, for the other processes sharing it, that `destination` is
    /// failing or no longer is. The run's outcome stands either way: a store that cannot
    /// take the record is reported and the next run tries again.
    async fn share_health(&self, destination: &str, failure: Option<&DestinationFailure>) {
        if let Err(e) = self
            .store
            .record_destination_failure(destination, failure)
            .await
        {
            tracing::warn!(destination, error = %e, "cannot record the destination's state in the store; other processes do not see it");
        }
    }

    /// Forgets that `destination` was failing, in this process and in the store: its config
    /// was just changed and verified, or it was removed. Its next run is not held back by
    /// the pause of the old config's failures.
    pub async fn forget_failure(&self, destination: &str) {
        self.health.forget_failure(destination);
        self.share_health(destination, None).await;
    }

    /// Events the destination has not exported yet: its tenant's only, for a tenant
    /// destination.
    pub async fn backlog(&self, dest: &Destination) -> Result<u64, StoreError> {
        let backlog = self
            .store
            .backlog_of(&dest.name, dest.tenant.as_deref())
            .await?;
        Ok(backlog.events)
    }

    /// Exports one destination up to sequence `up_to`, unless it is paused, or failing and
    /// its pause has not passed (see [`crate::health`]): then the report says so in
    /// `skipped`.
    pub async fn export_destination(&self, dest: &Destination, up_to: u64) -> DestinationReport {
        self.export_up_to(dest, up_to, None).await
    }

    /// [`Exporter::export_destination`], going on past `up_to` with full files as `follow`
    /// says when it is set (see [`Exporter::export_following`]).
    async fn export_up_to(
        &self,
        dest: &Destination,
        up_to: u64,
        follow: Option<&Follow>,
    ) -> DestinationReport {
        let mut report = DestinationReport::new(dest);
        if dest.pause.is_some() {
            report.skipped = Some("paused".into());
            return report;
        }
        let waits = self
            .waits_out_pauses
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(why) = self.health.waiting(&dest.name, now_ms()).filter(|_| waits) {
            report.skipped = Some(why);
            return report;
        }
        let Some(_running) = self.start_running(&dest.name) else {
            report.skipped = Some("still exporting: a run started earlier has not ended".into());
            return report;
        };
        match self.run_leased(dest, up_to, follow, &mut report).await {
            Err(e) => {
                let failure = self.health.failed(&dest.name, &e.to_string(), now_ms());
                tracing::error!(destination = %dest.name, error = %e, next_attempt = %rfc3339(failure.next_attempt_ms), "export stopped");
                self.share_health(&dest.name, Some(&failure)).await;
                report.error = Some(e);
            }
            Ok(()) if report.skipped.is_none() => {
                if self.health.succeeded(&dest.name, now_ms()) {
                    self.share_health(&dest.name, None).await;
                }
            }
            Ok(()) => {}
        }
        report
    }

    /// Runs the export under the destination's lease, so that two processes sharing the
    /// store (a service and a manual `export --once`, two cron jobs) never export one
    /// destination at once: the second leaves it to the first and says so.
    async fn run_leased(
        &self,
        dest: &Destination,
        up_to: u64,
        follow: Option<&Follow>,
        report: &mut DestinationReport,
    ) -> Result<(), ExportError> {
        let lease = format!("export:{}", dest.name);
        let claim = ExportClaim {
            destination: &dest.name,
            tenant: dest.tenant.as_deref(),
            up_to,
            lease: &lease,
            holder: &self.holder,
            ttl_ms: EXPORT_LEASE_MS,
        };
        // While the store holds writes back (an integrity check at open), taking the lease
        // waits: the first file is read meanwhile, and used if the lease shows it was the
        // right one.
        let (start, ahead) = if self.store.holds_writes() {
            tokio::join!(self.start(&claim, report), self.read_ahead(dest, up_to))
        } else {
            (self.start(&claim, report).await, None)
        };
        let mut result = match start? {
            Some((pending, cursor)) => {
                let first = ahead
                    .filter(|(from, _)| pending.is_none() && *from == cursor)
                    .map(|(_, file)| file);
                let from = RunStart {
                    pending,
                    cursor,
                    first,
                };
                self.run(dest, up_to, follow, &lease, from, report).await
            }
            // Nothing to export, but manifests may be due after an earlier run that failed
            // to write them.
            None if self.manifests.is_some() && report.skipped.is_none() => {
                if !self.hold_lease(&lease, report).await? {
                    return Ok(());
                }
                Ok(())
            }
            None => return Ok(()),
        };
        // Also after a failed run: the files it did complete are listed now rather than
        // waiting for the next success.
        if let Some(settings) = &self.manifests {
            let _one = self.manifest_writer.lock().await;
            match write_due(self.store.as_ref(), &self.namespace, dest, settings).await {
                Ok(written) => report.manifests = written,
                Err(e) if result.is_ok() => result = Err(e),
                Err(e) => {
                    tracing::error!(destination = %dest.name, error = %e, "manifest not written")
                }
            }
        }
        if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
            // It expires by itself; the next export waits until then.
            tracing::warn!(destination = %dest.name, error = %e, "cannot release the export lease");
        }
        result
    }

    /// Takes the lease and reads where the destination stands ([`Store::start_export`]):
    /// its pending batch and cursor; `None` when there is nothing to export (the lease is
    /// not taken) or another export holds the lease (`report.skipped` says so).
    async fn start(
        &self,
        claim: &ExportClaim<'_>,
        report: &mut DestinationReport,
    ) -> Result<Option<(Option<Batch>, u64)>, ExportError> {
        let mut start = self.store.start_export(claim).await?;
        if let ExportStart::HeldBy { holder, .. } = &start {
            if holder::has_exited(holder) {
                // Released in its name (only if it still holds it), then started once more.
                tracing::info!(destination = %report.destination, %holder, "taking over the export lease of an exited process");
                self.store.release_lease(claim.lease, holder).await?;
                start = self.store.start_export(claim).await?;
            }
        }
        Ok(match start {
            ExportStart::Started { pending, cursor } => Some((pending, cursor)),
            ExportStart::Idle => None,
            ExportStart::HeldBy { holder, expires_ms } => {
                skipped_for(&holder, expires_ms, report);
                None
            }
        })
    }

    /// Takes or renews the lease; false (with `report.skipped` set) if another holds it.
    async fn hold_lease(
        &self,
        lease: &str,
        report: &mut DestinationReport,
    ) -> Result<bool, ExportError> {
        match self
            .store
            .acquire_lease(lease, &self.holder, EXPORT_LEASE_MS)
            .await?
        {
            LeaseOutcome::Acquired { .. } => Ok(true),
            LeaseOutcome::HeldBy { holder, .. } if holder::has_exited(&holder) => {
                // Released in its name (only if it still holds it), then taken once more.
                tracing::info!(destination = %report.destination, %holder, "taking over the export lease of an exited process");
                self.store.release_lease(lease, &holder).await?;
                Ok(matches!(
                    self.store
                        .acquire_lease(lease, &self.holder, EXPORT_LEASE_MS)
                        .await?,
                    LeaseOutcome::Acquired { .. }
                ))
            }
            LeaseOutcome::HeldBy { holder, expires_ms } => {
                skipped_for(&holder, expires_ms, report);
                Ok(false)
            }
        }
    }

    /// Exports files up to `up_to`, from where [`Exporter::start`] found the destination,
    /// and past it while full files wait, as `follow` says when it is set.
    ///
    /// The next file is encoded while the one before it is put: encoding only reads the
    /// store, so the store's records keep their order (a batch is recorded only once the
    /// one before it is complete) and a crash leaves what it left before. At most two files
    /// are held at once.
    async fn run(
        &self,
        dest: &Destination,
        mut up_to: u64,
        follow: Option<&Follow>,
        lease: &str,
        from: RunStart,
        report: &mut DestinationReport,
    ) -> Result<(), ExportError> {
        let RunStart {
            pending,
            mut cursor,
            first,
        } = from;
        let store = self.store.as_ref();
        // The caller has just taken it.
        let mut leased_at = Instant::now();
        // Each file is written into the buffer of one delivered before it.
        let spare = SpareBodies::default();
        if let Some(batch) = pending {
            self.resume(dest, batch, report, &spare).await?;
            cursor = store.cursor(&dest.name).await?;
        }
        if cursor >= up_to {
            return Ok(());
        }
        let mut next = match first {
            Some(first) => Some(first),
            None => self.encode_after(dest, cursor, up_to, &spare).await?,
        };
        while let Some((file, started)) = next {
            let key = batch_key(
                "",
                &self.namespace,
                file.earliest_time,
                file.first_seq,
                file.last_seq,
                &dest.format.extension(),
            )?;
            let batch = Batch {
                destination: dest.name.clone(),
                first_seq: file.first_seq,
                last_seq: file.last_seq,
                key: key.to_string(),
                events: file.events,
                bytes: file.body.len() as u64,
                sha256: file.sha256.clone(),
                created_ms: chrono::Utc::now().timestamp_millis(),
                earliest_ms: Some(file.earliest_time),
                latest_ms: Some(file.latest_time),
            };
            let following_from = file.last_seq;
            // The read came up short, or reached `up_to`: nothing follows this file, unless
            // the run follows full files and one waits past `up_to`.
            let mut last = file.exhausted || file.last_seq >= up_to;
            if let Some(head) = self.head_past(dest, following_from, up_to, follow).await {
                up_to = head;
                last = false;
            }
            store.begin_batch(&batch).await?;
            if last {
                return self
                    .deliver(dest, &key, file, started, report, &spare)
                    .await;
            }
            let (delivered, following) = tokio::join!(
                self.deliver(dest, &key, file, started, report, &spare),
                self.encode_after(dest, following_from, up_to, &spare)
            );
            delivered?;
            next = following?;
            // Renewed before the next file once a tenth of it has passed: a run longer than
            // the lease keeps it, and a run of one file (most tenants') takes it once.
            if next.is_some()
                && leased_at.elapsed() >= Duration::from_millis(EXPORT_LEASE_MS as u64 / 10)
            {
                if !self.hold_lease(lease, report).await? {
                    return Ok(());
                }
                leased_at = Instant::now();
            }
        }
        Ok(())
    }

    /// The store's head, when a run that follows full files (`follow`) should move its end
    /// there: the next file, after `cursor`, would be cut short by `up_to`, and a full
    /// file's worth of events lies past `cursor` now. `None` otherwise, also when the head
    /// cannot be read (the run then ends where it would have).
    async fn head_past(
        &self,
        dest: &Destination,
        cursor: u64,
        up_to: u64,
        follow: Option<&Follow>,
    ) -> Option<u64> {
        let full = dest.limits.max_events;
        let follows = follow.is_some_and(Follow::goes_on) && dest.tenant.is_none();
        if !follows || up_to.saturating_sub(cursor) >= full {
            return None;
        }
        match self.store.last_seq().await {
            Ok(head) => (head.saturating_sub(cursor) >= full).then_some(head),
            Err(e) => {
                tracing::debug!(destination = %dest.name, error = %e, "cannot read the store's head; the run ends where it began to");
                None
            }
        }
    }

    /// The destination's first file, read before its lease is taken: the cursor it starts
    /// after, the file, and when its encoding began. `None` if there is none or the reading
    /// failed (the run then reads it again, and reports what fails).
    async fn read_ahead(
        &self,
        dest: &Destination,
        up_to: u64,
    ) -> Option<(u64, (EncodedFile, Instant))> {
        let cursor = self.store.cursor(&dest.name).await.ok()?;
        if cursor >= up_to {
            return None;
        }
        let file = self
            .encode_after(dest, cursor, up_to, &SpareBodies::default())
            .await
            .ok()??;
        Some((cursor, file))
    }

    /// Encodes the destination's next file: its events after `cursor`, up to `up_to`, with
    /// when its encoding began (the delivery's log line counts from there). It is written
    /// into a buffer from `spare` if there is one.
    async fn encode_after(
        &self,
        dest: &Destination,
        cursor: u64,
        up_to: u64,
        spare: &SpareBodies,
    ) -> Result<Option<(EncodedFile, Instant)>, ExportError> {
        let started = Instant::now();
        let file = encode_file(
            self.store.as_ref(),
            &dest.format,
            dest.tenant.as_deref(),
            cursor,
            up_to,
            dest.limits,
            spare.take(),
        )
        .await?;
        Ok(file.map(|file| (file, started)))
    }

    /// Finishes a batch recorded before a crash: same events, same bytes, same key. Its
    /// buffer then goes to `spare`, for the run's next file.
    async fn resume(
        &self,
        dest: &Destination,
        batch: Batch,
        report: &mut DestinationReport,
        spare: &SpareBodies,
    ) -> Result<(), ExportError> {
        let started = Instant::now();
        let whole = BatchLimits {
            max_events: u64::MAX,
            max_bytes: u64::MAX,
        };
        let conflict = |message: String| ExportError::Conflict {
            key: dest.backend_key_of_recorded(&batch.key),
            message,
        };
        let file = encode_file(
            self.store.as_ref(),
            &dest.format,
            dest.tenant.as_deref(),
            batch.first_seq - 1,
            batch.last_seq,
            whole,
            Vec::new(),
        )
        .await?
        .ok_or_else(|| {
            conflict("the events of this pending batch are no longer in the store".into())
        })?;
        if file.sha256 != batch.sha256 || file.first_seq != batch.first_seq {
            return Err(conflict(format!(
                "the pending batch {}..={} no longer encodes to the recorded bytes (sha256 {} vs {}); \
                 was the destination's schema, format or compression changed while it was in flight?",
                batch.first_seq, batch.last_seq, file.sha256, batch.sha256
            )));
        }
        let key = ObjectKey::new(relative_batch_key(&batch.key))?;
        tracing::info!(destination = %dest.name, key = %dest.sink.backend_key(&key), "resuming a batch recorded before a restart");
        self.deliver(dest, &key, file, started, report, spare).await
    }

    /// Puts the file and, once it is in the sink, moves the cursor. The file's buffer then
    /// goes to `spare`.
    async fn deliver(
        &self,
        dest: &Destination,
        key: &ObjectKey,
        file: EncodedFile,
        started: Instant,
        report: &mut DestinationReport,
        spare: &SpareBodies,
    ) -> Result<(), ExportError> {
        let bytes = file.body.len() as u64;
        let options = PutOptions::default()
            .with_content_type(dest.format.content_type())
            .with_metadata("auditsync-schema", dest.format.schema.name())
            .with_metadata("auditsync-sha256", file.sha256.clone());
        // A handle kept (it shares the bytes, no copy) to give the buffer back after the put.
        let body = Bytes::from(file.body);
        let outcome = dest.sink.put_opts(key, body.clone(), &options).await?;
        spare.give_back(body);
        if outcome == PutOutcome::AlreadyExists {
            // Only a byte-identical object may stand for this batch: anything else means
            // the key was written by something other than this batch.
            let existing = dest.sink.get(key).await?;
            let existing_sha = hex::encode(Sha256::digest(&existing));
            if existing_sha != file.sha256 {
                return Err(ExportError::Conflict {
                    key: dest.sink.backend_key(key),
                    message: format!(
                        "an object of {} bytes (sha256 {existing_sha}) is already there; this batch is {bytes} bytes (sha256 {}). Nothing was overwritten",
                        existing.len(),
                        file.sha256
                    ),
                });
            }
        }
        self.store
            .complete_batch(&dest.name, file.first_seq)
            .await?;
        report.files += 1;
        report.events += file.events;
        report.bytes += bytes;
        tracing::info!(
            destination = %dest.name,
            key = %dest.sink.backend_key(key),
            events = file.events,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            already_present = outcome == PutOutcome::AlreadyExists,
            "exported batch"
        );
        Ok(())
    }
}

/// Where a run starts: what [`Exporter::start`] found, and the first file if it was read
/// ahead of the lease (from that same cursor).
struct RunStart {
    pending: Option<Batch>,
    cursor: u64,
    first: Option<(EncodedFile, Instant)>,
}

/// Records in `report` that the export is left to `holder`, whose lease runs until
/// `expires_ms`.
fn skipped_for(holder: &str, expires_ms: i64, report: &mut DestinationReport) {
    let until = chrono::DateTime::from_timestamp_millis(expires_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let why = format!("left to the other export: another export of it is running ({holder}; its lease runs until {until} unless renewed)");
    tracing::info!(destination = %report.destination, %why, "export skipped");
    report.skipped = Some(why);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_keys_lose_the_prefix_they_were_recorded_with() {
        let relative = batch_key("", "acme", 0, 1, 2, "csv").unwrap().to_string();
        assert_eq!(relative_batch_key(&relative), relative);
        for prefix in ["tenant-a", "a/b/c", "acme/audit", "acme"] {
            let recorded = batch_key(prefix, "acme", 0, 1, 2, "csv")
                .unwrap()
                .to_string();
            assert_eq!(relative_batch_key(&recorded), relative, "{prefix}");
        }
    }

    #[test]
    fn keys_are_deterministic_and_sortable() {
        // 2023-07-29T06:02:37.857Z
        let key = batch_key("", "acme", 1_690_610_557_857, 1, 250, "ndjson.gz").unwrap();
        assert_eq!(
            key.as_str(),
            "acme/audit/2023/07/29/06/00000000000000000001-00000000000000000250.ndjson.gz"
        );
        let key = batch_key("tenant-a/", "acme", 0, 9, 10, "csv").unwrap();
        assert!(key
            .as_str()
            .starts_with("tenant-a/acme/audit/1970/01/01/00/"));
        assert!(batch_key("", "../x", 0, 1, 1, "csv").is_err());
        let a = batch_key("", "n", 0, 9, 10, "csv").unwrap();
        let b = batch_key("", "n", 0, 10, 11, "csv").unwrap();
        assert!(a < b);
    }
}
