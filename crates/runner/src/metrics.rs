//! `GET /metrics`: counters kept as the service runs and gauges read at scrape time, encoded
//! by `prometheus-client` in the OpenMetrics text format (which Prometheus reads).
//!
//! Labels are only destination, sync and schedule names (validated to `[A-Za-z0-9_-]`, plus
//! `sync:` for a sync's schedule) and fixed reason words, so no event content or secret can
//! reach a label. Tenant destinations do not get series of their own, which would be one set
//! per tenant: their exports count under `destination="@tenants"`, and besides totals only
//! the [`TOP_TENANTS`] with the largest backlog and the oldest unexported event are named
//! (`<name>@<tenant>`, from the tenant files).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use auditsync_engine::cron::Schedule;
use auditsync_engine::DestinationReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Tenant destinations named in the top-N gauges.
pub const TOP_TENANTS: usize = 10;

/// The label under which all tenant destinations' exports are counted.
pub const TENANTS_LABEL: &str = "@tenants";

/// Tenant destinations at scrape time.
#[derive(Debug, Clone, Default)]
pub struct TenantFigures {
    /// Tenant destinations configured.
    pub destinations: u64,
    /// Those failing.
    pub failing: u64,
    /// Those paused.
    pub paused: u64,
    /// Each one's backlog (its name, events, age of the oldest in seconds).
    pub backlogs: Vec<Backlog>,
}

/// Backlog of one destination, computed at scrape time.
#[derive(Debug, Clone)]
pub struct Backlog {
    /// The destination.
    pub destination: String,
    /// Events stored but not yet in its files.
    pub events: u64,
    /// Age of the oldest of them, in seconds (0 if none).
    pub oldest_age_secs: f64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabel {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabel {
    sync: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabel {
    schedule: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type PerDestination<M> = Family<DestinationLabel, M>;
type PerSync<M> = Family<SyncLabel, M>;

/// Every metric of a running service, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    ingested: Counter,
    duplicates: Counter,
    flagged: Counter,
    rejected: Family<Reason, Counter>,
    store_events: Family<Vec<(String, String)>, Gauge>,
    store_corrupted: Gauge,
    starting: Gauge,
    gc_deleted: Counter,
    exported_events: PerDestination<Counter>,
    exported_files: PerDestination<Counter>,
    exported_bytes: PerDestination<Counter>,
    export_failures: PerDestination<Counter>,
    destination_failing: PerDestination<Gauge>,
    last_export_success: PerDestination<FloatGauge>,
    backlog_events: PerDestination<Gauge>,
    backlog_oldest_age: PerDestination<FloatGauge>,
    tenant_destinations: Gauge,
    tenant_destinations_failing: Gauge,
    tenant_destinations_paused: Gauge,
    tenant_backlog_events: Gauge,
    tenant_top_backlog_events: PerDestination<Gauge>,
    tenant_top_oldest_age: PerDestination<FloatGauge>,
    sync_objects: PerSync<Counter>,
    sync_bytes: PerSync<Counter>,
    sync_conflicts: PerSync<Gauge>,
    sync_errors: PerSync<Counter>,
    sync_missing: PerSync<Gauge>,
    sync_failed_runs: PerSync<Counter>,
    sync_lag: PerSync<FloatGauge>,
    /// When each sync last left its target complete (Unix ms), for the lag at scrape time.
    sync_last_success_ms: Mutex<Vec<(String, Option<i64>)>>,
    schedule_next_fire: Family<ScheduleLabel, Gauge>,
    /// The service's schedules by name, for their next fire times.
    schedules: Mutex<Vec<(String, Schedule)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates the series (at zero) if it is not there yet, so that it is reported before its
/// first change.
fn ensure<L, M, C>(family: &Family<L, M, C>, label: &L)
where
    L: Clone + std::hash::Hash + Eq,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    drop(family.get_or_create(label));
}

fn destination(name: &str) -> DestinationLabel {
    DestinationLabel {
        destination: name.to_string(),
    }
}

fn sync_label(name: &str) -> SyncLabel {
    SyncLabel {
        sync: name.to_string(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // Counters are registered without `_total`: the encoder adds it.
        macro_rules! register {
            ($name:literal, $help:literal, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, $help, metric.clone());
                metric
            }};
        }
        Self {
            ingested: register!("auditsync_events_ingested", "Events stored by ingest", Counter::default()),
            duplicates: register!("auditsync_events_duplicate", "Events ignored at ingest because their id was already stored", Counter::default()),
            flagged: register!("auditsync_events_flagged", "Events stored although they break the schema's rules (permissive validation)", Counter::default()),
            rejected: register!("auditsync_ingest_rejected", "Ingest requests rejected, by reason; nothing of them was stored", Family::default()),
            store_events: register!("auditsync_store_events", "Events held in the store (absent when the store cannot be counted)", Family::default()),
            store_corrupted: register!("auditsync_store_corrupted", "1 once the store's database was found damaged: writes are refused", Gauge::default()),
            starting: register!("auditsync_starting", "1 while the service starts: the store has not given its verdict at open, and ingest waits for it", Gauge::default()),
            gc_deleted: register!("auditsync_gc_deleted", "Events deleted by garbage collection", Counter::default()),
            sync_objects: register!("auditsync_sync_objects_copied", "Objects copied and verified by the sync", Family::default()),
            sync_bytes: register!("auditsync_sync_bytes_copied", "Bytes copied by the sync", Family::default()),
            sync_conflicts: register!("auditsync_sync_conflicts", "Keys whose bytes differ between source and target at the last run (left alone)", Family::default()),
            sync_errors: register!("auditsync_sync_errors", "Objects that failed to copy or verify", Family::default()),
            sync_missing: register!("auditsync_sync_missing_objects", "Objects the target still lacked after the last run", Family::default()),
            sync_failed_runs: register!("auditsync_sync_failed_runs", "Runs with a conflict, an error, or a failed listing", Family::default()),
            sync_lag: register!("auditsync_sync_lag_seconds", "Seconds since the last run that left the target complete and conflict-free (-1: never)", Family::default()),
            schedule_next_fire: register!("auditsync_schedule_next_fire_timestamp_seconds", "Unix time of the schedule's next run (absent: it never fires)", Family::default()),
            exported_events: register!("auditsync_exported_events", "Events written to the destination", Family::default()),
            exported_files: register!("auditsync_exported_files", "Files written to the destination", Family::default()),
            exported_bytes: register!("auditsync_exported_bytes", "Bytes written to the destination", Family::default()),
            export_failures: register!("auditsync_export_failures", "Export runs that stopped on an error", Family::default()),
            destination_failing: register!("auditsync_destination_failing", "1 while the destination's last export failed", Family::default()),
            last_export_success: register!("auditsync_last_export_success_timestamp_seconds", "Unix time of the last export run without error (0: none yet)", Family::default()),
            backlog_events: register!("auditsync_backlog_events", "Events stored but not yet exported to the destination", Family::default()),
            backlog_oldest_age: register!("auditsync_backlog_oldest_age_seconds", "Age of the oldest event not yet exported to the destination", Family::default()),
            tenant_destinations: register!("auditsync_tenant_destinations", "Tenant destinations configured", Gauge::default()),
            tenant_destinations_failing: register!("auditsync_tenant_destinations_failing", "Tenant destinations whose last export failed", Gauge::default()),
            tenant_destinations_paused: register!("auditsync_tenant_destinations_paused", "Tenant destinations paused (GC keeps their backlog up to their bound)", Gauge::default()),
            tenant_backlog_events: register!("auditsync_tenant_backlog_events", "Events not yet exported, summed over the tenant destinations", Gauge::default()),
            tenant_top_backlog_events: register!("auditsync_tenant_top_backlog_events", "Backlog of the tenant destinations with the largest ones", Family::default()),
            tenant_top_oldest_age: register!("auditsync_tenant_top_oldest_age_seconds", "Age of the oldest unexported event of the tenant destinations that lag most", Family::default()),
            sync_last_success_ms: Mutex::default(),
            schedules: Mutex::default(),
            registry,
        }
    }
}

impl Metrics {
    /// Whether the service is still starting (`auditsync_starting`).
    pub fn starting(&self, starting: bool) {
        self.starting.set(i64::from(starting));
    }

    /// The schedules whose next fire time `/metrics` shows.
    pub fn schedules_registered(&self, schedules: Vec<(String, Schedule)>) {
        *lock(&self.schedules) = schedules;
    }

    /// Counts events stored by ingest, and those ignored as already stored.
    pub fn ingested(&self, stored: u64, duplicates: u64) {
        self.ingested.inc_by(stored);
        self.duplicates.inc_by(duplicates);
    }

    /// Counts events stored although they break the schema's rules (permissive mode).
    pub fn flagged(&self, n: u64) {
        self.flagged.inc_by(n);
    }

    /// Counts a rejected ingest request.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts events deleted by GC.
    pub fn gc_deleted(&self, n: u64) {
        self.gc_deleted.inc_by(n);
    }

    /// Records one run of a configured sync (`report` is `None` when listing failed).
    pub fn synced(
        &self,
        name: &str,
        report: Option<&auditsync_engine::sync::SyncReport>,
        now_ms: i64,
    ) {
        let label = sync_label(name);
        self.sync_registered(name);
        match report {
            Some(r) => {
                self.sync_objects.get_or_create(&label).inc_by(r.copied);
                self.sync_bytes.get_or_create(&label).inc_by(r.copied_bytes);
                self.sync_conflicts
                    .get_or_create(&label)
                    .set(r.conflicts.len() as i64);
                self.sync_errors
                    .get_or_create(&label)
                    .inc_by(r.errors.len() as u64);
                self.sync_missing
                    .get_or_create(&label)
                    .set(r.missing.saturating_sub(r.copied) as i64);
                if r.is_clean() {
                    let mut all = lock(&self.sync_last_success_ms);
                    if let Some(entry) = all.iter_mut().find(|(n, _)| n == name) {
                        entry.1 = Some(now_ms);
                    }
                } else {
                    self.sync_failed_runs.get_or_create(&label).inc();
                }
            }
            None => {
                self.sync_failed_runs.get_or_create(&label).inc();
            }
        }
    }

    /// Registers a sync so that it is reported before its first run.
    pub fn sync_registered(&self, name: &str) {
        let label = sync_label(name);
        ensure(&self.sync_objects, &label);
        ensure(&self.sync_bytes, &label);
        ensure(&self.sync_conflicts, &label);
        ensure(&self.sync_errors, &label);
        ensure(&self.sync_missing, &label);
        ensure(&self.sync_failed_runs, &label);
        let mut all = lock(&self.sync_last_success_ms);
        if !all.iter().any(|(n, _)| n == name) {
            all.push((name.to_string(), None));
        }
    }

    /// Records one export run of one destination.
    pub fn exported(&self, report: &DestinationReport, now_ms: i64) {
        // Tenant destinations are counted together; their state is in the tenant gauges.
        let label = match report.tenant {
            Some(_) => destination(TENANTS_LABEL),
            None => destination(&report.destination),
        };
        self.exported_events
            .get_or_create(&label)
            .inc_by(report.events);
        self.exported_files
            .get_or_create(&label)
            .inc_by(report.files);
        self.exported_bytes
            .get_or_create(&label)
            .inc_by(report.bytes);
        if report.error.is_some() {
            self.export_failures.get_or_create(&label).inc();
        }
        // A skipped run (paused, waiting out a failure, still running from an earlier tick)
        // says nothing new about the destination's state.
        if report.tenant.is_some() || report.skipped.is_some() {
            return;
        }
        if report.error.is_some() {
            self.destination_failing.get_or_create(&label).set(1);
        } else {
            self.destination_failing.get_or_create(&label).set(0);
            self.last_export_success
                .get_or_create(&label)
                .set(now_ms as f64 / 1000.0);
        }
    }

    /// Sets the tenant gauges: totals, and the [`TOP_TENANTS`] by backlog and by age.
    pub fn tenants(&self, figures: &TenantFigures) {
        self.tenant_destinations.set(figures.destinations as i64);
        self.tenant_destinations_failing.set(figures.failing as i64);
        self.tenant_destinations_paused.set(figures.paused as i64);
        self.tenant_backlog_events
            .set(figures.backlogs.iter().map(|b| b.events as i64).sum());
        let mut by_backlog: Vec<&Backlog> =
            figures.backlogs.iter().filter(|b| b.events > 0).collect();
        by_backlog.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then(a.destination.cmp(&b.destination))
        });
        self.tenant_top_backlog_events.clear();
        for b in by_backlog.iter().take(TOP_TENANTS) {
            self.tenant_top_backlog_events
                .get_or_create(&destination(&b.destination))
                .set(b.events as i64);
        }
        by_backlog.sort_by(|a, b| {
            b.oldest_age_secs
                .total_cmp(&a.oldest_age_secs)
                .then(a.destination.cmp(&b.destination))
        });
        self.tenant_top_oldest_age.clear();
        for b in by_backlog.iter().take(TOP_TENANTS) {
            self.tenant_top_oldest_age
                .get_or_create(&destination(&b.destination))
                .set(b.oldest_age_secs);
        }
    }

    /// The exposition, with the gauges read now: the store's event count (`None` when it
    /// cannot be counted, as when it is corrupted), its damage flag, and each destination's
    /// backlog.
    pub fn render(
        &self,
        store_events: Option<u64>,
        backlogs: &[Backlog],
        corrupted: bool,
    ) -> String {
        self.store_events.clear();
        if let Some(events) = store_events {
            self.store_events
                .get_or_create(&Vec::new())
                .set(events as i64);
        }
        self.store_corrupted.set(i64::from(corrupted));
        let now = chrono::Utc::now();
        for (name, last) in lock(&self.sync_last_success_ms).iter() {
            let lag = last.map_or(-1.0, |ms| {
                (now.timestamp_millis() - ms).max(0) as f64 / 1000.0
            });
            self.sync_lag.get_or_create(&sync_label(name)).set(lag);
        }
        self.schedule_next_fire.clear();
        for (schedule, s) in lock(&self.schedules).iter() {
            if let Some(next) = s.next_after(now) {
                self.schedule_next_fire
                    .get_or_create(&ScheduleLabel {
                        schedule: schedule.clone(),
                    })
                    .set(next.timestamp());
            }
        }
        self.backlog_events.clear();
        self.backlog_oldest_age.clear();
        for b in backlogs {
            let label = destination(&b.destination);
            // Every destination has each series, zero before its first export.
            ensure(&self.exported_events, &label);
            ensure(&self.exported_files, &label);
            ensure(&self.exported_bytes, &label);
            ensure(&self.export_failures, &label);
            ensure(&self.destination_failing, &label);
            ensure(&self.last_export_success, &label);
            self.backlog_events
                .get_or_create(&label)
                .set(b.events as i64);
            self.backlog_oldest_age
                .get_or_create(&label)
                .set(b.oldest_age_secs);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The scheduler reports each run here.
impl auditsync_engine::schedule::ScheduleObserver for Metrics {
    fn exported(&self, report: &DestinationReport, now_ms: i64) {
        Metrics::exported(self, report, now_ms);
    }
    fn gc_deleted(&self, deleted: u64) {
        Metrics::gc_deleted(self, deleted);
    }
    fn synced(&self, name: &str, report: Option<&auditsync_engine::sync::SyncReport>, now_ms: i64) {
        Metrics::synced(self, name, report, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_openmetrics_with_every_family_once() {
        let m = Metrics::default();
        m.ingested(5, 1);
        m.rejected("malformed");
        m.rejected("malformed");
        let text = m.render(
            Some(7),
            &[Backlog {
                destination: "local".into(),
                events: 3,
                oldest_age_secs: 1.5,
            }],
            false,
        );
        for line in [
            "# TYPE auditsync_events_ingested counter",
            "auditsync_events_ingested_total 5",
            "auditsync_events_duplicate_total 1",
            "auditsync_ingest_rejected_total{reason=\"malformed\"} 2",
            "auditsync_store_events 7",
            "auditsync_store_corrupted 0",
            "auditsync_exported_events_total{destination=\"local\"} 0",
            "auditsync_backlog_events{destination=\"local\"} 3",
            "auditsync_backlog_oldest_age_seconds{destination=\"local\"} 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // Each family's TYPE line is written once, right before its samples.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types.len(), unique.len());
        // A store that cannot be counted has no event count, and says it is corrupted.
        let damaged = m.render(None, &[], true);
        assert!(!damaged.contains("auditsync_store_events "), "{damaged}");
        assert!(damaged.lines().any(|l| l == "auditsync_store_corrupted 1"));
    }
}
