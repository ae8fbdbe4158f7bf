//! `auditsync schedule`: when each schedule fires next, in UTC and in its own time zone.

use std::process::ExitCode;

use anyhow::{bail, Context};
use auditsync_engine::cron::Schedule;
use auditsync_store::ScheduleRun;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::schedules::{in_zone, run_summary, utc, ConfiguredSchedule};

/// Arguments of `auditsync schedule`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScheduleArgs {
    /// An expression to try instead of the config's schedules, e.g.
    /// "CRON_TZ=Europe/Berlin 0 30 2 * * *" (quote it).
    expression: Option<String>,
    /// Compute from this instant instead of now (RFC 3339 with an offset, e.g.
    /// 2026-03-08T06:59:00Z).
    #[arg(long)]
    at: Option<String>,
    /// How many fire times to show per schedule (1 to 1000).
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
}

impl ScheduleArgs {
    /// Whether the command needs the config (it does unless an expression is given).
    pub(crate) fn needs_config(&self) -> bool {
        self.expression.is_none()
    }
}

/// Prints the fire times. `configured` and `runs` are the config's schedules and the store's
/// records of their runs; with an expression argument they are not consulted.
pub(crate) fn schedule_command(
    args: &ScheduleArgs,
    configured: Vec<ConfiguredSchedule>,
    runs: &[ScheduleRun],
) -> anyhow::Result<ExitCode> {
    if !(1..=1000).contains(&args.count) {
        bail!("--count {}: expected 1 to 1000", args.count);
    }
    let from = match &args.at {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .with_context(|| {
                format!(
                    "--at `{text}`: expected RFC 3339 with an offset, e.g. 2026-03-08T06:59:00Z"
                )
            })?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let shown = match &args.expression {
        Some(expr) => vec![ConfiguredSchedule {
            name: "expression".into(),
            key: String::new(),
            schedule: Schedule::parse(expr)?,
        }],
        None => configured,
    };
    let mut never = false;
    let mut entries = Vec::new();
    for s in &shown {
        let times = s.schedule.upcoming(from, args.count);
        never |= times.is_empty();
        let last = runs.iter().find(|r| r.schedule == s.name);
        if args.json {
            entries.push(entry_json(s, &times, last));
        } else {
            print_entry(s, &times, last, from, args.expression.is_none());
        }
    }
    if args.json {
        let out = json!({"from": utc(from), "schedules": entries});
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    // A schedule that never fires is a mistake in the expression; say so in the exit code.
    Ok(if never {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_entry(
    s: &ConfiguredSchedule,
    times: &[DateTime<Utc>],
    last: Option<&ScheduleRun>,
    from: DateTime<Utc>,
    from_config: bool,
) {
    let zone = s.schedule.time_zone();
    if from_config {
        println!("{} ({}): {}", s.name, s.key, s.schedule);
    } else {
        println!("{}", s.schedule);
    }
    println!("  time zone: {zone}");
    if from_config {
        match last {
            Some(run) => println!("  last run:  {}", run_summary(run)),
            None => println!("  last run:  none recorded"),
        }
    }
    if times.is_empty() {
        println!(
            "  never fires: no instant within five years of {} matches it",
            utc(from)
        );
        return;
    }
    for (i, t) in times.iter().enumerate() {
        let label = if i == 0 { "  next:" } else { "       " };
        if s.schedule.has_explicit_time_zone() {
            println!("{label}      {}   {}", utc(*t), in_zone(&s.schedule, *t));
        } else {
            println!("{label}      {}", utc(*t));
        }
    }
}

fn entry_json(
    s: &ConfiguredSchedule,
    times: &[DateTime<Utc>],
    last: Option<&ScheduleRun>,
) -> Value {
    let next: Vec<Value> = times
        .iter()
        .map(|t| json!({"utc": utc(*t), "local": in_zone(&s.schedule, *t)}))
        .collect();
    let last_run = last.map(|r| {
        json!({
            "started": DateTime::from_timestamp_millis(r.started_ms).map(utc),
            "finished": DateTime::from_timestamp_millis(r.finished_ms).map(utc),
            "ok": r.ok,
        })
    });
    json!({
        "name": s.name,
        "key": if s.key.is_empty() { Value::Null } else { s.key.clone().into() },
        "expression": s.schedule.expression(),
        "timeZone": s.schedule.time_zone().name(),
        "next": next,
        "neverFires": times.is_empty(),
        "lastRun": last_run,
    })
}
