//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Labels are only destination names (validated to `[A-Za-z0-9_-]`) and fixed reason
//! words, so no event content or secret can reach a label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use auditsync_engine::cron::Schedule;
use auditsync_engine::DestinationReport;

/// Per-destination export counters.
#[derive(Debug, Default, Clone)]
struct DestinationCounters {
    events: u64,
    files: u64,
    bytes: u64,
    failures: u64,
    failing: bool,
    last_success_ms: Option<i64>,
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

/// All counters of a running service.
#[derive(Debug, Default)]
pub struct Metrics {
    ingested: AtomicU64,
    duplicates: AtomicU64,
    flagged: AtomicU64,
    gc_deleted: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    destinations: Mutex<BTreeMap<String, DestinationCounters>>,
    syncs: Mutex<BTreeMap<String, SyncCounters>>,
    /// The service's schedules by name, for their next fire times.
    schedules: Mutex<Vec<(String, Schedule)>>,
}

/// Per-sync counters.
#[derive(Debug, Default, Clone)]
struct SyncCounters {
    objects: u64,
    bytes: u64,
    conflicts: u64,
    errors: u64,
    missing: u64,
    runs_failed: u64,
    last_success_ms: Option<i64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// The schedules whose next fire time `/metrics` shows.
    pub fn schedules_registered(&self, schedules: Vec<(String, Schedule)>) {
        *lock(&self.schedules) = schedules;
    }

    /// Counts events stored by ingest, and those ignored as already stored.
    pub fn ingested(&self, stored: u64, duplicates: u64) {
        self.ingested.fetch_add(stored, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    }

    /// Counts events stored although they break the schema's rules (permissive mode).
    pub fn flagged(&self, n: u64) {
        self.flagged.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a rejected ingest request.
    pub fn rejected(&self, reason: &'static str) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
    }

    /// Counts events deleted by GC.
    pub fn gc_deleted(&self, n: u64) {
        self.gc_deleted.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one run of a configured sync (`report` is `None` when listing failed).
    pub fn synced(
        &self,
        name: &str,
        report: Option<&auditsync_engine::sync::SyncReport>,
        now_ms: i64,
    ) {
        let mut all = lock(&self.syncs);
        let s = all.entry(name.to_string()).or_default();
        match report {
            Some(r) => {
                s.objects += r.copied;
                s.bytes += r.copied_bytes;
                s.conflicts = r.conflicts.len() as u64;
                s.errors += r.errors.len() as u64;
                s.missing = r.missing.saturating_sub(r.copied);
                if r.is_clean() {
                    s.last_success_ms = Some(now_ms);
                } else {
                    s.runs_failed += 1;
                }
            }
            None => s.runs_failed += 1,
        }
    }

    /// Registers a sync so that it is reported before its first run.
    pub fn sync_registered(&self, name: &str) {
        lock(&self.syncs).entry(name.to_string()).or_default();
    }

    /// Records one export run of one destination.
    pub fn exported(&self, report: &DestinationReport, now_ms: i64) {
        let mut all = lock(&self.destinations);
        let d = all.entry(report.destination.clone()).or_default();
        d.events += report.events;
        d.files += report.files;
        d.bytes += report.bytes;
        if report.error.is_some() {
            d.failures += 1;
            d.failing = true;
        } else {
            d.failing = false;
            d.last_success_ms = Some(now_ms);
        }
    }

    /// Renders everything, with the store's event count and each destination's backlog.
    /// The exposition text. `store_events` is `None` when the store could not be counted
    /// (it is corrupted); `corrupted` is the store's damage flag.
    pub fn render(
        &self,
        store_events: Option<u64>,
        backlogs: &[Backlog],
        corrupted: bool,
    ) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_string()
        };
        let mut lines = Vec::new();
        let n = family(
            "auditsync_events_ingested_total",
            "counter",
            "Events stored by ingest.",
        );
        lines.push(format!("{n} {}", self.ingested.load(Ordering::Relaxed)));
        let n = family(
            "auditsync_events_duplicate_total",
            "counter",
            "Events ignored at ingest because their id was already stored.",
        );
        lines.push(format!("{n} {}", self.duplicates.load(Ordering::Relaxed)));
        let n = family(
            "auditsync_events_flagged_total",
            "counter",
            "Events stored although they break the schema's rules (permissive validation).",
        );
        lines.push(format!("{n} {}", self.flagged.load(Ordering::Relaxed)));
        let n = family(
            "auditsync_ingest_rejected_total",
            "counter",
            "Ingest requests rejected, by reason; nothing of them was stored.",
        );
        for (reason, count) in lock(&self.rejected).iter() {
            lines.push(format!("{n}{{reason=\"{reason}\"}} {count}"));
        }
        let n = family(
            "auditsync_store_events",
            "gauge",
            "Events held in the store.",
        );
        if let Some(events) = store_events {
            lines.push(format!("{n} {events}"));
        }
        let n = family(
            "auditsync_store_corrupted",
            "gauge",
            "1 once the store's database was found damaged: writes are refused.",
        );
        lines.push(format!("{n} {}", u8::from(corrupted)));
        let n = family(
            "auditsync_gc_deleted_total",
            "counter",
            "Events deleted by garbage collection.",
        );
        lines.push(format!("{n} {}", self.gc_deleted.load(Ordering::Relaxed)));
        out.push_str(&lines.join("\n"));
        out.push('\n');

        let all = lock(&self.destinations).clone();
        // (name, type, help, value)
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&DestinationCounters, &Backlog) -> String,
        );
        let per_destination: [Family; 8] = [
            (
                "auditsync_exported_events_total",
                "counter",
                "Events written to the destination.",
                |d, _| d.events.to_string(),
            ),
            (
                "auditsync_exported_files_total",
                "counter",
                "Files written to the destination.",
                |d, _| d.files.to_string(),
            ),
            (
                "auditsync_exported_bytes_total",
                "counter",
                "Bytes written to the destination.",
                |d, _| d.bytes.to_string(),
            ),
            (
                "auditsync_export_failures_total",
                "counter",
                "Export runs that stopped on an error.",
                |d, _| d.failures.to_string(),
            ),
            (
                "auditsync_destination_failing",
                "gauge",
                "1 while the destination's last export failed.",
                |d, _| u8::from(d.failing).to_string(),
            ),
            (
                "auditsync_last_export_success_timestamp_seconds",
                "gauge",
                "Unix time of the last export run without error.",
                |d, _| {
                    d.last_success_ms
                        .map_or("0".into(), |ms| format!("{:.3}", ms as f64 / 1000.0))
                },
            ),
            (
                "auditsync_backlog_events",
                "gauge",
                "Events stored but not yet exported to the destination.",
                |_, b| b.events.to_string(),
            ),
            (
                "auditsync_backlog_oldest_age_seconds",
                "gauge",
                "Age of the oldest event not yet exported to the destination.",
                |_, b| format!("{:.3}", b.oldest_age_secs),
            ),
        ];
        self.render_syncs(&mut out);
        self.render_schedules(&mut out);
        for (name, kind, help, value) in per_destination {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for b in backlogs {
                let counters = all.get(&b.destination).cloned().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{name}{{destination=\"{}\"}} {}",
                    b.destination,
                    value(&counters, b)
                );
            }
        }
        out
    }

    fn render_schedules(&self, out: &mut String) {
        let schedules = lock(&self.schedules);
        if schedules.is_empty() {
            return;
        }
        let name = "auditsync_schedule_next_fire_timestamp_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Unix time of the schedule's next run (none: it never fires).\n# TYPE {name} gauge"
        );
        let now = chrono::Utc::now();
        for (schedule, s) in schedules.iter() {
            if let Some(next) = s.next_after(now) {
                let _ = writeln!(
                    out,
                    "{name}{{schedule=\"{schedule}\"}} {}",
                    next.timestamp()
                );
            }
        }
    }

    fn render_syncs(&self, out: &mut String) {
        let all = lock(&self.syncs).clone();
        if all.is_empty() {
            return;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        type Value = fn(&SyncCounters, i64) -> String;
        let per_sync: [(&str, &str, &str, Value); 7] = [
            ("auditsync_sync_objects_copied_total", "counter", "Objects copied and verified by the sync.", |s, _| s.objects.to_string()),
            ("auditsync_sync_bytes_copied_total", "counter", "Bytes copied by the sync.", |s, _| s.bytes.to_string()),
            ("auditsync_sync_conflicts", "gauge", "Keys whose bytes differ between source and target at the last run (left alone).", |s, _| s.conflicts.to_string()),
            ("auditsync_sync_errors_total", "counter", "Objects that failed to copy or verify.", |s, _| s.errors.to_string()),
            ("auditsync_sync_missing_objects", "gauge", "Objects the target still lacked after the last run.", |s, _| s.missing.to_string()),
            ("auditsync_sync_failed_runs_total", "counter", "Runs with a conflict, an error, or a failed listing.", |s, _| s.runs_failed.to_string()),
            ("auditsync_sync_lag_seconds", "gauge", "Seconds since the last run that left the target complete and conflict-free (-1: never).", |s, now| {
                s.last_success_ms.map_or("-1".into(), |ms| format!("{:.3}", (now - ms).max(0) as f64 / 1000.0))
            }),
        ];
        for (name, kind, help, value) in per_sync {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (sync, counters) in &all {
                let _ = writeln!(out, "{name}{{sync=\"{sync}\"}} {}", value(counters, now_ms));
            }
        }
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
