//! The schedules a config defines, under the names their runs are recorded by, and how
//! their fire times are shown to an operator.

use anyhow::Context;
use auditsync_engine::cron::Schedule;
use auditsync_engine::schedule::{sync_schedule_name, EXPORT_SCHEDULE, GC_SCHEDULE};
use auditsync_store::ScheduleRun;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::Config;

/// One schedule of the config.
#[derive(Debug, Clone)]
pub(crate) struct ConfiguredSchedule {
    /// The name its runs are recorded under: `export`, `gc`, `sync:<name>`.
    pub name: String,
    /// The config key it comes from.
    pub key: String,
    /// The parsed expression.
    pub schedule: Schedule,
}

/// Every schedule of the config: export, GC, then each sync in config order.
pub(crate) fn configured(config: &Config) -> anyhow::Result<Vec<ConfiguredSchedule>> {
    let mut all = vec![
        (
            EXPORT_SCHEDULE.to_string(),
            "ueventsSchedule".to_string(),
            config.uevents_schedule.as_str(),
        ),
        (
            GC_SCHEDULE.to_string(),
            "ueventsGCSchedule".to_string(),
            config.uevents_gc_schedule.as_str(),
        ),
    ];
    for (i, sync) in config.syncs.iter().enumerate() {
        all.push((
            sync_schedule_name(&sync.name),
            format!("syncs[{i}].schedule"),
            sync.schedule.as_str(),
        ));
    }
    all.into_iter()
        .map(|(name, key, expr)| {
            let schedule = Schedule::parse(expr).with_context(|| format!("config key `{key}`"))?;
            Ok(ConfiguredSchedule {
                name,
                key,
                schedule,
            })
        })
        .collect()
}

/// An instant as RFC 3339 in UTC (`Z`).
pub(crate) fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An instant as RFC 3339 with the schedule's zone offset.
pub(crate) fn in_zone(schedule: &Schedule, t: DateTime<Utc>) -> String {
    t.with_timezone(&schedule.time_zone())
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The next fire time for a one-line summary: both clocks when the zone is not UTC.
pub(crate) fn next_fire_summary(schedule: &Schedule, now: DateTime<Utc>) -> String {
    match schedule.next_after(now) {
        None => "never (no instant within five years matches)".into(),
        Some(t) if schedule.has_explicit_time_zone() => {
            format!(
                "{} ({} {})",
                utc(t),
                in_zone(schedule, t),
                schedule.time_zone()
            )
        }
        Some(t) => utc(t),
    }
}

/// A recorded run in a few words: `2026-11-29T06:00:00Z, ok, took 1.2 s`.
pub(crate) fn run_summary(run: &ScheduleRun) -> String {
    let started = DateTime::from_timestamp_millis(run.started_ms).map_or("?".into(), utc);
    format!(
        "{started}, {}, took {:.1} s",
        if run.ok { "ok" } else { "FAILED" },
        (run.finished_ms - run.started_ms).max(0) as f64 / 1000.0
    )
}
