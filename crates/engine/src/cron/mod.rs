//! Cron schedules with seconds, fired at the very instants the Go `robfig/cron` v3 library
//! fires them with its parser `Second | Minute | Hour | Dom | Month | Dow | Descriptor`.
//!
//! - Fields: `sec min hour dom month dow`. Each takes `*` (or `?`), numbers, names
//!   (`jan`-`dec`, `sun`-`sat`, any case), ranges `a-b`, steps `*/n`, `a-b/n` and `a/n`
//!   (from `a` to the field's maximum), and lists. Day of week is 0-6 with 0 = Sunday.
//! - When both day of month and day of week are restricted, a day matching either fires
//!   (as in Vixie cron); when either is `*` (or `?`, or `*/1`), both must match.
//! - Descriptors: `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//!   `@hourly`, and `@every <duration>` with Go durations (`90s`, `5m`, `1h30m`, `1.5h`),
//!   whole seconds, at least one, counted from the previous run.
//! - Time zone: `CRON_TZ=<IANA zone> ` (or `TZ=`) before the expression. Without it, UTC.
//! - Daylight saving, as robfig: a time that spring-forward skips does not fire that day
//!   (where the clocks skip midnight, as in Havana, a midnight schedule skips that day); a
//!   time in the hour that fall-back repeats fires in both.
//!
//! croner reads the fields' syntax into bit sets (`fields`); robfig's grammar, its rule for
//! the day fields and its search through local time (`search`) are kept here, because
//! croner differs from robfig in each of them.

mod duration;
mod fields;
mod local_time;
mod search;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use chrono_tz::Tz;

pub use duration::parse_go_duration;
use fields::FieldSets;

/// A parsed schedule: what fires, and in which time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    zone: Tz,
    explicit_zone: bool,
    when: When,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum When {
    Cron(Box<FieldSets>),
    /// `@every <duration>`: whole seconds, at least one.
    Every(Duration),
}

/// Why a schedule string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {expr:?}: {reason}")]
#[non_exhaustive]
pub struct CronError {
    /// The schedule as given.
    pub expr: String,
    /// What is wrong, naming the field.
    pub reason: String,
}

const DESCRIPTORS: &str =
    "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration>";

impl Schedule {
    /// Parses a 6-field expression or a descriptor, with an optional `CRON_TZ=` / `TZ=`
    /// prefix.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let fail = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        let trimmed = expr.trim();
        let (zone, explicit_zone, spec) = split_zone(trimmed).map_err(fail)?;
        let when = if let Some(rest) = spec.strip_prefix("@every") {
            if !rest.starts_with(char::is_whitespace) {
                return Err(fail("`@every` takes a duration, e.g. `@every 5m`".into()));
            }
            let d = parse_go_duration(rest.trim()).map_err(fail)?;
            // robfig/cron rounds down to whole seconds and never fires faster than 1s.
            When::Every(Duration::from_secs(d.as_secs().max(1)))
        } else {
            let expanded = match spec.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 0 1 1 *",
                "@monthly" => "0 0 0 1 * *",
                "@weekly" => "0 0 0 * * 0",
                "@daily" | "@midnight" => "0 0 0 * * *",
                "@hourly" => "0 0 * * * *",
                _ if spec.starts_with('@') => {
                    return Err(fail(format!(
                        "unknown descriptor `{spec}`; known: {DESCRIPTORS}"
                    )))
                }
                _ => spec,
            };
            let parts: Vec<&str> = expanded.split_whitespace().collect();
            When::Cron(Box::new(fields::parse(&parts).map_err(fail)?))
        };
        Ok(Schedule {
            source: trimmed.to_string(),
            zone,
            explicit_zone,
            when,
        })
    }

    /// The first fire time strictly after `after`, or `None` if there is none within five
    /// years (e.g. `0 0 0 30 2 *`), where robfig/cron gives up too.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Every(d) => Some(after.trunc_subsecs(0) + TimeDelta::from_std(*d).ok()?),
            When::Cron(fields) => search::next_after(fields, self.zone, after),
        }
    }

    /// The next `count` fire times after `after` (fewer if the schedule stops firing).
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(count);
        let mut t = after;
        while times.len() < count {
            match self.next_after(t) {
                Some(next) => {
                    times.push(next);
                    t = next;
                }
                None => break,
            }
        }
        times
    }

    /// The expression as written, prefix included.
    pub fn expression(&self) -> &str {
        &self.source
    }

    /// The time zone its fields are read in: the `CRON_TZ=` prefix's, or UTC.
    pub fn time_zone(&self) -> Tz {
        self.zone
    }

    /// Whether the expression named its time zone (otherwise it is read in UTC).
    pub fn has_explicit_time_zone(&self) -> bool {
        self.explicit_zone
    }

    /// For `@every`, its interval; `None` for a calendar expression.
    pub fn interval(&self) -> Option<Duration> {
        match self.when {
            When::Every(d) => Some(d),
            When::Cron(_) => None,
        }
    }
}

impl FromStr for Schedule {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Splits robfig's `CRON_TZ=Zone ` / `TZ=Zone ` prefix from the expression.
fn split_zone(spec: &str) -> Result<(Tz, bool, &str), String> {
    let Some(rest) = spec
        .strip_prefix("CRON_TZ=")
        .or_else(|| spec.strip_prefix("TZ="))
    else {
        return Ok((Tz::UTC, false, spec));
    };
    let Some((name, expr)) = rest.split_once(char::is_whitespace) else {
        return Err(format!(
            "time zone `{rest}` must be followed by an expression, e.g. `CRON_TZ={rest} 0 0 2 * * *`"
        ));
    };
    let zone = match name {
        "Local" => {
            return Err(
                "time zone `Local` depends on the machine; name an IANA zone such as `Europe/Berlin`, or `UTC`"
                    .into(),
            )
        }
        "" => Tz::UTC,
        _ => Tz::from_str(name).map_err(|_| {
            format!("unknown time zone `{name}`: expected an IANA name such as `America/New_York` or `UTC`")
        })?,
    };
    Ok((zone, true, expr.trim_start()))
}
