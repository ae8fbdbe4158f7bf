//! The schedules of a running auditsync: export on one cron schedule, GC on another, and
//! each configured sync on its own. `auditsync run` uses it, and so can any application
//! that embeds the [`crate::recorder::Recorder`]:
//!
//! ```no_run
//! # async fn demo(exporter: std::sync::Arc<auditsync_engine::Exporter>,
//! #               store: std::sync::Arc<dyn auditsync_store::Store>) -> Result<(), auditsync_engine::cron::CronError> {
//! use auditsync_engine::cron::Schedule;
//! use auditsync_engine::schedule::Scheduler;
//! let running = Scheduler::new(exporter, store)
//!     .export_on(Schedule::parse("@every 5m")?)
//!     .gc_on(Schedule::parse("0 0 1 * * *")?)
//!     .start();
//! // ... serve requests ...
//! running.shutdown().await; // lets an export in progress finish
//! # Ok(()) }
//! ```

use std::sync::Arc;

use auditsync_core::Sink;
use auditsync_store::{ScheduleRun, Store};
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cron::Schedule;
use crate::gc::{gc_once, GcOutcome};
use crate::sync::{sync, SyncOptions, SyncReport, VerifiedCache};
use crate::{DestinationReport, Exporter};

/// The name the export schedule's runs are recorded under ([`Store::record_schedule_run`]).
pub const EXPORT_SCHEDULE: &str = "export";
/// The name the GC schedule's runs are recorded under.
pub const GC_SCHEDULE: &str = "gc";

/// The name a sync's scheduled runs are recorded under: `sync:<name>`.
pub fn sync_schedule_name(sync: &str) -> String {
    format!("sync:{sync}")
}

/// Records a finished run; a store that cannot take the record costs a warning, not the run.
async fn record_run(store: &dyn Store, schedule: &str, started: DateTime<Utc>, ok: bool) {
    let run = ScheduleRun {
        schedule: schedule.to_string(),
        started_ms: started.timestamp_millis(),
        finished_ms: Utc::now().timestamp_millis(),
        ok,
    };
    if let Err(e) = store.record_schedule_run(&run).await {
        tracing::warn!(schedule, error = %e, "cannot record the scheduled run");
    }
}

/// Told what each scheduled run did (for metrics). Every method defaults to nothing; the
/// scheduler logs runs itself.
pub trait ScheduleObserver: Send + Sync {
    /// One destination's part of a scheduled export, at `now_ms`.
    fn exported(&self, _report: &DestinationReport, _now_ms: i64) {}
    /// A scheduled GC deleted `deleted` events.
    fn gc_deleted(&self, _deleted: u64) {}
    /// A scheduled sync ran (`None`: it failed before copying, e.g. listing).
    fn synced(&self, _name: &str, _report: Option<&SyncReport>, _now_ms: i64) {}
}

struct Unobserved;
impl ScheduleObserver for Unobserved {}

/// One sync run on its own schedule.
#[derive(Debug, Clone)]
pub struct ScheduledSync {
    /// Its name, for logs and metrics.
    pub name: String,
    /// Where objects come from.
    pub source: Arc<dyn Sink>,
    /// Where they go.
    pub target: Arc<dyn Sink>,
    /// When it runs.
    pub schedule: Schedule,
    /// Prefix and concurrency (a scheduled sync never runs dry).
    pub options: SyncOptions,
}

/// Builds the set of schedules; [`Scheduler::start`] runs them on the current runtime.
pub struct Scheduler {
    exporter: Arc<Exporter>,
    store: Arc<dyn Store>,
    export: Option<Schedule>,
    gc: Option<Schedule>,
    gc_disabled: bool,
    syncs: Vec<ScheduledSync>,
    observer: Arc<dyn ScheduleObserver>,
    /// How this scheduler names itself when it claims a firing (replicas sharing a store
    /// run each firing once).
    holder: String,
}

impl Scheduler {
    /// No schedule yet: add them with the `*_on` methods.
    pub fn new(exporter: Arc<Exporter>, store: Arc<dyn Store>) -> Self {
        Self {
            exporter,
            store,
            export: None,
            gc: None,
            gc_disabled: false,
            syncs: Vec::new(),
            observer: Arc::new(Unobserved),
            holder: auditsync_store::holder::this_process(),
        }
    }

    /// Exports every destination on `schedule` (`ueventsSchedule`).
    pub fn export_on(mut self, schedule: Schedule) -> Self {
        self.export = Some(schedule);
        self
    }

    /// Collects what every destination has on `schedule` (`ueventsGCSchedule`).
    pub fn gc_on(mut self, schedule: Schedule) -> Self {
        self.gc = Some(schedule);
        self
    }

    /// `disableUeventsGC`: the GC schedule still fires, but deletes nothing.
    pub fn gc_disabled(mut self, disabled: bool) -> Self {
        self.gc_disabled = disabled;
        self
    }

    /// Adds a sync with its own schedule.
    pub fn sync_on(mut self, sync: ScheduledSync) -> Self {
        self.syncs.push(sync);
        self
    }

    /// Reports each run to `observer`.
    pub fn observed_by(mut self, observer: Arc<dyn ScheduleObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Starts every schedule as a task of the current tokio runtime.
    pub fn start(self) -> RunningSchedules {
        let (stop, rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(run_export_and_gc(
            self.exporter.clone(),
            self.store.clone(),
            ExportAndGc {
                export: self.export,
                gc: self.gc,
                gc_disabled: self.gc_disabled,
            },
            self.observer.clone(),
            self.holder.clone(),
            rx.clone(),
        ))];
        if let Some(settings) = self.exporter.manifest_settings() {
            tasks.push(tokio::spawn(run_manifest_heartbeat(
                self.exporter.clone(),
                settings.interval,
                rx.clone(),
            )));
        }
        for job in self.syncs {
            tasks.push(tokio::spawn(run_sync(
                job,
                self.store.clone(),
                self.observer.clone(),
                self.holder.clone(),
                rx.clone(),
            )));
        }
        RunningSchedules { stop, tasks }
    }
}

/// Schedules that are running; [`RunningSchedules::shutdown`] stops them.
#[derive(Debug)]
pub struct RunningSchedules {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSchedules {
    /// Stops every schedule: nothing new starts, and a run in progress (an export, a GC, a
    /// sync) finishes before this returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a schedule task failed");
            }
        }
    }
}

/// Sleeps until `next`; false when stopping comes first (or `next` never comes, in which
/// case it waits for the stop).
async fn wait_until(next: Option<DateTime<Utc>>, stop: &mut watch::Receiver<bool>) -> bool {
    let Some(next) = next else {
        let _ = stop.wait_for(|s| *s).await;
        return false;
    };
    let wait = (next - Utc::now()).to_std().unwrap_or_default();
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

fn next(schedule: Option<&Schedule>) -> Option<DateTime<Utc>> {
    schedule.and_then(|s| s.next_after(Utc::now()))
}

/// The export and GC schedules, run by one task.
struct ExportAndGc {
    export: Option<Schedule>,
    gc: Option<Schedule>,
    gc_disabled: bool,
}

async fn run_export_and_gc(
    exporter: Arc<Exporter>,
    store: Arc<dyn Store>,
    plan: ExportAndGc,
    observer: Arc<dyn ScheduleObserver>,
    holder: String,
    mut stop: watch::Receiver<bool>,
) {
    let ExportAndGc {
        export,
        gc,
        gc_disabled,
    } = plan;
    let mut next_export = next(export.as_ref());
    let mut next_gc = next(gc.as_ref());
    tracing::info!(?next_export, ?next_gc, "schedules started");
    // Export runs go on beside the schedule: a destination whose run outlasts its tick (a
    // sink that hangs, or retries) delays no other's next run; it is skipped until it ends.
    let mut exports = tokio::task::JoinSet::new();
    loop {
        let next_run = [next_export, next_gc].into_iter().flatten().min();
        if next_run.is_none() && (export.is_some() || gc.is_some()) {
            tracing::warn!("neither the export nor the GC schedule will fire again");
        }
        if !wait_until(next_run, &mut stop).await {
            // Runs in progress finish first (see `RunningSchedules::shutdown`), each at the
            // head it last read (the stop ends their following): events that keep arriving
            // do not hold the stop back.
            while let Some(ended) = exports.join_next().await {
                log_if_failed(ended);
            }
            return;
        }
        while let Some(ended) = exports.try_join_next() {
            log_if_failed(ended);
        }
        // Not raced against `stop`: an export or GC that started runs to its end.
        let now = Utc::now();
        // A claim lasts until half-way to the next firing; the next firing itself is
        // counted from the end of the run, as before claims.
        if let Some(fire) = next_export.filter(|t| *t <= now) {
            let upcoming = next(export.as_ref());
            if claim_firing(store.as_ref(), &holder, EXPORT_SCHEDULE, fire, upcoming).await {
                let (exporter, store, observer, stop) = (
                    exporter.clone(),
                    store.clone(),
                    observer.clone(),
                    stop.clone(),
                );
                exports.spawn(async move {
                    run_export(&exporter, store.as_ref(), observer.as_ref(), now, stop).await
                });
            }
            next_export = next(export.as_ref());
        }
        if let Some(fire) = next_gc.filter(|t| *t <= now) {
            let upcoming = next(gc.as_ref());
            if claim_firing(store.as_ref(), &holder, GC_SCHEDULE, fire, upcoming).await {
                let started = Utc::now();
                let result = gc_once(store.as_ref(), &exporter.takers().await, gc_disabled).await;
                match &result {
                    Ok(GcOutcome::Deleted(n)) => observer.gc_deleted(*n),
                    Ok(GcOutcome::Disabled) => {}
                    Err(e) => tracing::error!(error = %e, "garbage collection failed"),
                }
                record_run(store.as_ref(), GC_SCHEDULE, started, result.is_ok()).await;
            }
            next_gc = next(gc.as_ref());
        }
    }
}

fn log_if_failed(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::error!(error = %e, "an export run failed");
    }
}

/// Claims one firing of a schedule for this process, so that replicas sharing a store run
/// it once: the claim is a lease named after the schedule that lasts half the time to its
/// next firing, so the other replicas firing at the same instant find it taken, and the next
/// firing finds it free. A store that cannot be asked lets the run go ahead (it fails on its
/// own if the store is down).
async fn claim_firing(
    store: &dyn Store,
    holder: &str,
    schedule: &str,
    fire: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> bool {
    let ttl_ms = next.map_or(60_000, |n| {
        ((n - fire).num_milliseconds() / 2).clamp(500, 3_600_000)
    });
    match store
        .acquire_lease(&format!("fire:{schedule}"), holder, ttl_ms)
        .await
    {
        Ok(auditsync_store::LeaseOutcome::Acquired { .. }) => true,
        Ok(auditsync_store::LeaseOutcome::HeldBy { holder, .. }) => {
            tracing::debug!(schedule, %holder, "this firing runs on another replica");
            false
        }
        Err(e) => {
            tracing::warn!(schedule, error = %e, "cannot claim the scheduled run; running it");
            true
        }
    }
}

async fn run_export(
    exporter: &Arc<Exporter>,
    store: &dyn Store,
    observer: &dyn ScheduleObserver,
    now: DateTime<Utc>,
    stop: watch::Receiver<bool>,
) {
    let mut ok = true;
    for report in exporter.export_following(stop).await {
        ok &= report.error.is_none();
        observer.exported(&report, Utc::now().timestamp_millis());
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
    record_run(store, EXPORT_SCHEDULE, now, ok).await;
}

/// Keeps every destination's manifests fresh between exports: whatever the export schedule,
/// a manifest is at most about `interval` old (looked at every quarter of it), so a verifier
/// with `--expect-fresh` can tell a cut-off tail from a quiet one.
async fn run_manifest_heartbeat(
    exporter: Arc<Exporter>,
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let every = (interval / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(900),
    );
    loop {
        let at = Utc::now() + chrono::Duration::from_std(every).unwrap_or_default();
        if !wait_until(Some(at), &mut stop).await {
            return;
        }
        for (destination, result) in exporter.write_manifests(None).await {
            if let Err(e) = result {
                tracing::warn!(%destination, error = %e, "manifest heartbeat failed");
            }
        }
    }
}

/// Runs one sync on its schedule until stopped; a run in progress finishes. Objects
/// verified equal are remembered, so later runs compare sizes only for them.
async fn run_sync(
    job: ScheduledSync,
    store: Arc<dyn Store>,
    observer: Arc<dyn ScheduleObserver>,
    holder: String,
    mut stop: watch::Receiver<bool>,
) {
    let options = SyncOptions {
        dry_run: false,
        ..job.options.clone()
    };
    let cache = Arc::new(VerifiedCache::default());
    loop {
        let Some(fire) = job.schedule.next_after(Utc::now()) else {
            let _ = wait_until(None, &mut stop).await;
            return;
        };
        if !wait_until(Some(fire), &mut stop).await {
            return;
        }
        let name = sync_schedule_name(&job.name);
        if !claim_firing(
            store.as_ref(),
            &holder,
            &name,
            fire,
            job.schedule.next_after(fire),
        )
        .await
        {
            continue;
        }
        let started = Utc::now();
        let result = sync(
            job.source.clone(),
            job.target.clone(),
            &options,
            Arc::default(),
            cache.clone(),
        )
        .await;
        let now_ms = Utc::now().timestamp_millis();
        let name = &job.name;
        match &result {
            Ok(report) => {
                observer.synced(name, Some(report), now_ms);
                for c in &report.conflicts {
                    tracing::warn!(sync = %name, key = %c.key, "conflict: the key differs between source and target; left alone");
                }
                for e in &report.errors {
                    tracing::warn!(sync = %name, error = %e, "sync copy failed");
                }
                if report.copied > 0 || !report.is_clean() {
                    tracing::info!(sync = %name, copied = report.copied, bytes = report.copied_bytes, conflicts = report.conflicts.len(), errors = report.errors.len(), "sync run done");
                }
            }
            Err(e) => {
                observer.synced(name, None, now_ms);
                tracing::warn!(sync = %name, error = %e, "sync run failed");
            }
        }
        let ok = result.as_ref().is_ok_and(SyncReport::is_clean);
        record_run(store.as_ref(), &sync_schedule_name(name), started, ok).await;
    }
}
